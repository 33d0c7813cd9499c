//! svctl's one exit-code table, shared by every command. With several services each is
//! processed and the highest code wins, so a script sees the worst thing that happened.

use warden::svdir::ClientError;

/// Ordered by severity: `max()` over the services gives the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Done; `status`/`check`: every service is up (or in the state it wants).
    Success,
    /// `-w`: the wanted state was not reached before the deadline.
    Timeout,
    /// Bad command line.
    Usage,
    /// `status`/`check`: a service is not up (LSB's "program is not running").
    NotUp,
    /// No supervisor reads the service's (or svscan's) control FIFO.
    NotSupervised,
    /// The service directory (or its `log/main`) does not exist.
    NoSuchService,
    PermissionDenied,
    /// `supervise/status` exists but is not a status record.
    UnreadableStatus,
    /// Any other system error.
    System,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Timeout => 1,
            Outcome::Usage => 2,
            Outcome::NotUp => 3,
            Outcome::NotSupervised => 4,
            Outcome::NoSuchService => 5,
            Outcome::PermissionDenied => 6,
            Outcome::UnreadableStatus => 7,
            Outcome::System => 111,
        }
    }

    pub fn of(error: &ClientError) -> Outcome {
        match error {
            ClientError::NoSuchService(_) => Outcome::NoSuchService,
            ClientError::NotSupervised(_) => Outcome::NotSupervised,
            ClientError::PermissionDenied(_) => Outcome::PermissionDenied,
            ClientError::BadStatus(..) => Outcome::UnreadableStatus,
            ClientError::Io(..) => Outcome::System,
        }
    }
}

/// The table as `--help` and docs/svctl.md show it.
pub const TABLE: &str = "\
Exit codes (several services: all are processed, the highest code wins):
  0    success; status/check: every service is up (check: in the state it wants)
  1    timeout: -w ran out before the wanted state was reached
  2    usage error
  3    status/check: a service is not up (down, finishing, or not in its wanted state)
  4    not supervised: no supervise (or, for svscan commands, no svscan) reads the FIFO
  5    no such service (or no SERVICE/log/main for `log`)
  6    permission denied
  7    unreadable status: supervise/status is not a status record
  111  other system error
";

/// Prints `svctl: fatal: unable to <verb> <object>: <cause>` for a client error and returns
/// its exit code.
pub fn report(verb: &str, error: &ClientError) -> Outcome {
    let (object, cause) = match error {
        ClientError::NoSuchService(p) => (p.clone(), "no such service".to_owned()),
        ClientError::NotSupervised(p) => (p.clone(), "supervise not running".to_owned()),
        ClientError::PermissionDenied(p) => (p.clone(), "permission denied".to_owned()),
        ClientError::Io(p, e) => (p.clone(), e.to_string()),
        ClientError::BadStatus(p, e) => (p.clone(), format!("unreadable status: {e}")),
    };
    warden::say!(
        "svctl: fatal: unable to {verb} {}: {cause}",
        object.display()
    );
    Outcome::of(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::io::Errno;
    use std::path::PathBuf;
    use warden::status::StatusError;

    #[test]
    fn codes_grow_with_severity() {
        let all = [
            Outcome::Success,
            Outcome::Timeout,
            Outcome::Usage,
            Outcome::NotUp,
            Outcome::NotSupervised,
            Outcome::NoSuchService,
            Outcome::PermissionDenied,
            Outcome::UnreadableStatus,
            Outcome::System,
        ];
        for pair in all.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].code() < pair[1].code());
        }
        for o in all {
            assert!(
                TABLE.contains(&format!("\n  {:<4} ", o.code())),
                "{o:?} missing from the table"
            );
        }
    }

    #[test]
    fn each_client_error_has_its_code() {
        let p = PathBuf::from("/x");
        assert_eq!(
            Outcome::of(&ClientError::NoSuchService(p.clone())).code(),
            5
        );
        assert_eq!(
            Outcome::of(&ClientError::NotSupervised(p.clone())).code(),
            4
        );
        assert_eq!(
            Outcome::of(&ClientError::PermissionDenied(p.clone())).code(),
            6
        );
        assert_eq!(
            Outcome::of(&ClientError::BadStatus(
                p.clone(),
                StatusError::Truncated(3)
            ))
            .code(),
            7
        );
        assert_eq!(Outcome::of(&ClientError::Io(p, Errno::IO)).code(), 111);
    }
}
