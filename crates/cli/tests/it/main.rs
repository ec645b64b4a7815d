//! End-to-end tests: the real stack (lb, API nodes, workers) on ephemeral ports
//! over a real SQLite file, driven over HTTP.

mod api_keys;
mod bad_input;
mod bench_cli;
mod binary;
mod chaos;
mod container;
mod crashes;
mod dashboard;
mod db_outages;
mod db_tls;
mod deploy_files;
mod disk_full;
mod durability;
mod events;
mod faults;
mod ingest_crashes;
mod lb_threads;
mod least_privilege;
mod metrics;
mod openapi;
mod power_loss;
mod probes;
mod processes;
mod python_worker;
mod queues;
mod request_log;
mod secrets;
mod status;
mod support;
mod task_type_processes;
mod task_types;
mod tasks;
mod up_tls;
mod upgrades;
mod workers;
