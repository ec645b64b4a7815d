//! The store conformance suite: every queue promise, checked against every backend.

/// Declares one test per conformance check, each on a fresh store from `$setup`
/// (an async fn returning the store and a guard that cleans it up).
#[macro_export]
macro_rules! conformance_suite {
    ($setup:ident) => {
        $crate::conformance_suite!($setup;
            insert_then_get_round_trips,
            insert_many_is_one_batch_and_idempotent,
            claim_never_hands_a_task_to_two_workers,
            claim_orders_by_priority_then_run_at,
            claim_skips_tasks_not_yet_due,
            complete_records_result_and_cache,
            stale_lease_token_is_rejected,
            completing_twice_is_idempotent,
            failure_retries_then_dies,
            expired_lease_is_rescued,
            release_requeues_without_spending_an_attempt,
            lease_extension_keeps_a_task_from_rescue,
            request_log_counts_per_node,
            worker_heartbeat_upserts,
            insert_wakes_waiting_workers,
            task_counts_follow_states,
            finished_counts_cover_only_the_window,
            dead_tasks_can_be_retried_and_queued_ones_cancelled,
            idempotency_keys_return_the_same_task,
            a_reused_idempotency_key_with_another_request_is_refused,
            an_event_batch_key_refuses_another_batch,
            one_leader_at_a_time_until_its_lease_expires,
            prune_removes_old_finished_tasks_expired_cache_and_silent_workers,
            finished_tasks_are_pruned_by_their_states_own_retention,
            tasks_list_newest_first_with_filters_and_a_cursor,
            cache_counts_hits_misses_and_reads_per_entry,
            idempotency_key_of_a_pruned_task_queues_a_new_one,
            queue_concurrency_limit_holds_across_claimers,
            queue_rate_limit_spends_tokens_and_refills,
            concurrency_key_limits_running_tasks_per_key,
            a_keyed_task_queued_after_unkeyed_ones_is_claimed_at_once,
            workers_claim_only_their_queues,
            a_paused_queue_is_claimed_by_no_one_until_resumed,
            a_submissions_backoff_travels_with_its_task,
            the_same_cacheable_input_is_queued_once_while_live,
            a_submission_whose_result_is_cached_is_answered_not_queued,
            claimers_take_only_the_types_they_run,
            a_submissions_timeout_travels_with_its_task,
            workers_report_their_types_and_queued_tasks_count_by_type,
            a_batch_claim_comes_back_in_claim_order,
            a_resent_id_under_a_new_idempotency_key_returns_its_task,
            a_resent_id_of_a_finished_task_is_not_queued_again,
            a_tasks_tenant_travels_with_it_and_scopes_lists,
            a_chain_runs_step_by_step_and_the_workflow_succeeds,
            a_batch_of_plain_tasks_and_steps_ends_each_and_moves_the_workflow_on,
            fan_in_waits_for_every_parent_and_receives_their_results,
            parents_ending_at_once_queue_their_child_exactly_once,
            a_dead_step_cancels_its_dependents_and_a_retry_brings_them_back,
            under_run_a_step_runs_after_a_failed_parent_and_sees_its_error,
            a_lease_lost_on_the_last_attempt_fails_the_step_and_cancels_dependents,
            cancelling_a_workflow_stops_every_step_and_fences_running_ones,
            workflows_list_newest_first_by_status_and_name,
            finished_workflows_are_pruned_with_their_graphs,
            a_step_after_a_batch_waits_for_everything_the_batch_added,
            adding_steps_is_refused_past_the_limit_and_off_a_workflow,
            the_task_browser_filters_every_way_and_pages_by_finish_time,
            a_bulk_retry_queues_each_dead_task_once_in_bounded_batches,
            a_bulk_action_left_by_a_stopped_node_resumes_elsewhere,
            bulk_cancel_and_delete_act_on_the_ids_given_in_their_states,
            the_audit_log_lists_newest_first_by_action,
        );
    };
    ($setup:ident; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $setup().await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

mod conformance;
mod driver;
mod partitions;
mod postgres;
mod sqlite;
