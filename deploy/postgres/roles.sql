-- weir's two database roles, least privilege (run once per database, as a
-- superuser or the database's owner, before `weir migrate`):
--   :owner  owns the schema; only `weir migrate` (the Job / the one-shot
--           compose service) connects as it.
--   :app    what API nodes and workers connect as: reads and writes rows,
--           runs no DDL. They check at start that the schema is current and
--           otherwise stop, naming `weir migrate`.
-- psql variables: owner, app, owner_password, app_password, and db.
--   psql -v owner=weir_owner -v app=weir_app -v owner_password=… \
--        -v app_password=… -v db=weir -f roles.sql
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'owner', :'owner_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'app', :'app_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app') \gexec

SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', :'db', :'app') \gexec
SELECT format('GRANT CREATE, CONNECT ON DATABASE %I TO %I', :'db', :'owner') \gexec
\connect :db
SELECT format('GRANT USAGE, CREATE ON SCHEMA public TO %I', :'owner') \gexec
SELECT format('GRANT USAGE ON SCHEMA public TO %I', :'app') \gexec
-- Tables and sequences the owner makes later (every migration) are the
-- app's to read and write, never to alter.
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public '
              'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', :'owner', :'app') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public '
              'GRANT USAGE, SELECT ON SEQUENCES TO %I', :'owner', :'app') \gexec
-- Functions it makes are the app's to call (the ones that make and drop
-- the day partitions of finished tasks run with the owner's rights).
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public '
              'GRANT EXECUTE ON FUNCTIONS TO %I', :'owner', :'app') \gexec
-- And those already there, if the schema was made before this ran.
SELECT format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %I', :'app') \gexec
SELECT format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I', :'app') \gexec
SELECT format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO %I', :'app') \gexec
