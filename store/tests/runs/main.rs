//! The run journal, stored graphs, graphs published as agents and run
//! retention on SQLite and
//! PostgreSQL (`CONVERGIO_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; a fresh database per test),
//! each case run on both through `convergio_tests::on_both_backends!`.

mod graph_agents;
mod journal;
mod raw;
mod replan;
mod retention;
mod rows;
