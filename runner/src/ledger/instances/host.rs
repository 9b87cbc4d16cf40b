//! Which machine, and which boot of it, this process runs on: a pid means
//! something only there.

use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    pub host: String,
    /// Linux's per-boot random id; empty where the system has none.
    pub boot_id: String,
}

impl HostIdentity {
    pub fn current() -> Self {
        static CURRENT: OnceLock<HostIdentity> = OnceLock::new();
        CURRENT
            .get_or_init(|| Self {
                host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|name| name.trim().to_string())
                    .or_else(|_| std::env::var("HOSTNAME"))
                    .unwrap_or_default(),
                boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                    .map(|id| id.trim().to_string())
                    .unwrap_or_default(),
            })
            .clone()
    }

    /// Whether a pid recorded by an instance on `host` during `boot_id`
    /// can be checked from here. Rows from before hosts were recorded
    /// (empty) never can.
    pub fn sees(&self, host: &str, boot_id: &str) -> bool {
        !host.is_empty() && host == self.host && boot_id == self.boot_id
    }
}
