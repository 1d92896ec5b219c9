//! The registry of job kinds this daemon runs: each kind maps to the function that does it.

use std::time::Duration;

use crate::config::Settings;
use crate::queue::probe::ProbeHandler;
use crate::queue::purge::PurgeHandler;
use crate::queue::Registry;

pub fn registry(settings: &Settings) -> Registry {
    let mut registry = Registry::new().register(
        "job-purge",
        PurgeHandler {
            min_retention: Duration::from_secs_f64(settings.purge.min_retention),
            batch_size: settings.purge.batch_size,
        },
    );
    if settings.testing.probe_kinds {
        registry = registry.register("probe", ProbeHandler);
    }
    registry
}
