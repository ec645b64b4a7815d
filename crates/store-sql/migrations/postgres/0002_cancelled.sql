-- Tasks can be cancelled by users; a cancelled task is finished.
ALTER TABLE tasks_finished DROP CONSTRAINT tasks_finished_state_check;
ALTER TABLE tasks_finished ADD CONSTRAINT tasks_finished_state_check
    CHECK (state IN ('succeeded', 'dead', 'cancelled'));
