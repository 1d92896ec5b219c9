//! Validates the deployment assets under `deploy/` with the tools operators use on them:
//! `systemd-analyze` for the unit, `promtool` for the alert rules and their unit tests,
//! `kubernetes-validate` (PyPI, offline schemas) for the manifests, and parsers for the Grafana
//! dashboard and the Dockerfile. No database is needed.
//!
//! Missing tools are installed on first use when running as root: `promtool` and
//! `systemd-analyze` from Debian's `prometheus` and `systemd` packages, and
//! `kubernetes-validate` into a virtualenv under `target/deploy-venv` (reused afterwards).
//!
//! One module per asset: `systemd` (the unit and the example config), `prometheus` (the alert
//! rules and their tests), `kubernetes` (the manifests), `grafana` (the dashboard), `docker`
//! (the Dockerfile) and `readme` (deploy/README.md lists every asset); `support` holds what
//! they share (paths, running tools and installing them, YAML, the exported metrics).

mod docker;
mod grafana;
mod kubernetes;
mod prometheus;
mod readme;
mod support;
mod systemd;
