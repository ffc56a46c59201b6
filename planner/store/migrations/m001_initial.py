"""The initial schema."""

from __future__ import annotations

VERSION = 1

SQL = """
CREATE TABLE sources (
    name VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    config VARCHAR NOT NULL,            -- JSON
    cost_model VARCHAR,
    cost_params VARCHAR,                -- JSON
    cost_unit VARCHAR,
    cap_tokens DOUBLE,
    plugin VARCHAR NOT NULL DEFAULT '',
    plugin_version VARCHAR NOT NULL DEFAULT '',
    description VARCHAR NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE experiments (
    name VARCHAR PRIMARY KEY,
    meta VARCHAR NOT NULL,              -- JSON
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE anneal_specs (
    job_id VARCHAR PRIMARY KEY,
    experiment VARCHAR NOT NULL,
    source VARCHAR,                     -- NULL: the control anneal
    tokens DOUBLE NOT NULL,
    replay_fraction DOUBLE NOT NULL,
    seed INTEGER NOT NULL,
    position INTEGER NOT NULL
);

CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY,         -- the job id for runs the planner ran itself
    study VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    compute DOUBLE NOT NULL,
    compute_unit VARCHAR,
    params DOUBLE,
    tokens DOUBLE,
    seed INTEGER,
    cost_curation DOUBLE,
    cost_training DOUBLE,
    origin VARCHAR NOT NULL,
    meta VARCHAR NOT NULL DEFAULT '{}', -- JSON: versions, hashes, experiment…
    ingested_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE metrics (
    run_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    value DOUBLE NOT NULL,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE metric_directions (
    name VARCHAR PRIMARY KEY,
    lower_is_better BOOLEAN NOT NULL
);

CREATE TABLE fits (
    fit_id VARCHAR PRIMARY KEY,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    seq BIGINT NOT NULL,
    study VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    family VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    body VARCHAR NOT NULL,              -- JSON of the LawFit's scalar fields
    boot DOUBLE[],                      -- bootstrap samples, row-major
    boot_rows INTEGER,
    boot_cols INTEGER,
    success BOOLEAN NOT NULL
);

CREATE TABLE plans (
    plan_id VARCHAR PRIMARY KEY,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    seq BIGINT NOT NULL,
    budget DOUBLE NOT NULL,
    unit VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    success BOOLEAN NOT NULL,
    body VARCHAR NOT NULL,              -- JSON of the whole Plan
    fit_ids VARCHAR NOT NULL            -- JSON list
);

CREATE SEQUENCE seq_ids START 1;
"""
