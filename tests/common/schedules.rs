//! Config that switches the default schedules off (the documented `enabled = false`
//! override), for daemons whose test must see only its own jobs.

pub const NO_DEFAULT_SCHEDULES: &str = "
[[schedules]]
name = \"job-purge\"
cron = \"0 0 * * * *\"
kind = \"job-purge\"
enabled = false

[[schedules]]
name = \"sync\"
cron = \"0 30 * * * *\"
kind = \"sync\"
enabled = false

[[schedules]]
name = \"eviction\"
cron = \"0 15 3 * * *\"
kind = \"eviction\"
enabled = false

[[schedules]]
name = \"enrichment-catchup\"
cron = \"0 */5 * * * *\"
kind = \"enrichment-catchup\"
enabled = false
";
