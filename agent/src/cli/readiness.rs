//! Readiness for a service manager (sd_notify(3), systemd's `Type=notify`):
//! `READY=1` once every program is attached, capabilities are dropped and
//! the core runs; `STOPPING=1` when a signal asks it to stop. Without
//! `$NOTIFY_SOCKET` (not under systemd) nothing is sent.

use sd_notify::NotifyState;

/// Every program attached and the core running: tell the manager, with a
/// status line `systemctl status` shows.
pub(super) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Detaching and finishing the analysis.
pub(super) fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("detaching and finishing the analysis"),
    ]);
}

/// A manager that cannot be told is no reason to stop capturing: it
/// shows up there as a start-up timeout, and here as one warning.
fn send(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        log::warn!("cannot notify the service manager through $NOTIFY_SOCKET: {e}");
    }
}
