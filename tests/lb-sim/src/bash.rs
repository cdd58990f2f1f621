//! `bash` for kind's load balancer, which is started as `bash -c <bootstrap>`.
//! busybox has no bash applet and the bootstrap needs nothing beyond POSIX sh
//! plus `echo -en`, which busybox sh has; so this runs `/bin/sh` with the same
//! arguments.
//!
//! It runs as a child rather than by exec because this process is PID 1 in the
//! container: a shell as PID 1 ignores `docker stop`'s SIGTERM (no handler, and
//! the kernel drops default-action signals to PID 1), which would cost every stop
//! the full grace period. Here a stop signal ends the container at once.

use tokio::process::Command;

pub async fn run(args: &[String]) -> u8 {
    let mut stop = tokio::spawn(crate::stop_signal());
    let mut child = match Command::new("/bin/sh").args(args).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bash: cannot run /bin/sh: {e}");
            return 127;
        }
    };
    tokio::select! {
        status = child.wait() => match status {
            // A shell reports "killed by signal N" as 128 + N.
            Ok(s) => s.code().map_or(128 + signal_of(&s), |c| c as u8),
            Err(e) => {
                eprintln!("bash: waiting for /bin/sh: {e}");
                1
            }
        },
        _ = &mut stop => {
            // Ending PID 1 ends the container; the shell and its children go with it.
            let _ = child.start_kill();
            143
        }
    }
}

fn signal_of(status: &std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    status.signal().unwrap_or(0) as u8
}
