//! Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM (systemd's stop): the run stops at the
//! next message, commits a checkpoint of what it has downloaded, and reports; the next run
//! resumes from there. A second signal ends the process at once (the kernel's default), which
//! loses nothing either: what was committed stays.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Set by a signal handler (the CLI installs one); read by the engine between messages.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicUsize>);

impl Interrupt {
    /// Makes SIGINT and SIGTERM set this flag; a second one while it is set terminates the
    /// process with the usual status (128 + the signal's number).
    pub fn install() -> std::io::Result<Interrupt> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let interrupt = Interrupt::default();
        for signal in [SIGINT, SIGTERM] {
            let set = Arc::new(std::sync::atomic::AtomicBool::new(false));
            signal_hook::flag::register_conditional_default(signal, set.clone())?;
            signal_hook::flag::register(signal, set)?;
            signal_hook::flag::register_usize(signal, interrupt.0.clone(), signal as usize)?;
        }
        Ok(interrupt)
    }

    /// The signal that asked the run to stop, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            n => i32::try_from(n).ok(),
        }
    }

    /// Asks the run to stop as if `signal` had arrived (tests, embedding programs).
    pub fn raise(&self, signal: i32) {
        self.0.store(signal.max(1) as usize, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.signal().is_some()
    }
}
