//! Control bytes written to `supervise/control` (runit's set).

use rustix::process::Signal;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Up,
    Down,
    Once,
    Exit,
    Pause,
    Cont,
    Hup,
    Alarm,
    Interrupt,
    Quit,
    Usr1,
    Usr2,
    Term,
    Kill,
    /// warden's own (`e`): do not stop or restart the service; exit once it has exited by
    /// itself. svscan sends it to a logger's supervisor, whose logger then drains its pipe to
    /// EOF (daemontools' `x`, s6-supervise's SIGHUP).
    ExitAfter,
    /// warden's own (`H`): svscan's word that the service's dependencies are not ready: it is
    /// not started (stopped if it runs), though still wanted up.
    Hold,
    /// warden's own (`G`): its dependencies are ready: a wanted-up service starts at once.
    Go,
}

const TABLE: &[(u8, Command)] = &[
    (b'u', Command::Up),
    (b'd', Command::Down),
    (b'o', Command::Once),
    (b'x', Command::Exit),
    (b'p', Command::Pause),
    (b'c', Command::Cont),
    (b'h', Command::Hup),
    (b'a', Command::Alarm),
    (b'i', Command::Interrupt),
    (b'q', Command::Quit),
    (b'1', Command::Usr1),
    (b'2', Command::Usr2),
    (b't', Command::Term),
    (b'k', Command::Kill),
    (b'e', Command::ExitAfter),
    (b'H', Command::Hold),
    (b'G', Command::Go),
];

impl Command {
    /// `None` for bytes that are not commands; the supervisor ignores those.
    pub fn from_byte(byte: u8) -> Option<Command> {
        TABLE.iter().find(|(b, _)| *b == byte).map(|(_, c)| *c)
    }

    pub fn byte(self) -> u8 {
        TABLE
            .iter()
            .find(|(_, c)| *c == self)
            .map(|(b, _)| *b)
            .unwrap_or(b'?')
    }

    /// The signal a plain signalling command sends to the service.
    pub fn signal(self) -> Option<Signal> {
        Some(match self {
            Command::Pause => Signal::STOP,
            Command::Cont => Signal::CONT,
            Command::Hup => Signal::HUP,
            Command::Alarm => Signal::ALARM,
            Command::Interrupt => Signal::INT,
            Command::Quit => Signal::QUIT,
            Command::Usr1 => Signal::USR1,
            Command::Usr2 => Signal::USR2,
            Command::Term => Signal::TERM,
            Command::Kill => Signal::KILL,
            Command::Up
            | Command::Down
            | Command::Once
            | Command::Exit
            | Command::ExitAfter
            | Command::Hold
            | Command::Go => return None,
        })
    }

    /// Decodes what one read of the FIFO brought; junk bytes (newlines too) are skipped.
    pub fn parse_all(bytes: &[u8]) -> impl Iterator<Item = Command> + '_ {
        bytes.iter().filter_map(|&b| Command::from_byte(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        for (b, c) in TABLE {
            assert_eq!(Command::from_byte(*b), Some(*c));
            assert_eq!(c.byte(), *b);
        }
        assert_eq!(Command::from_byte(b'z'), None);
        assert_eq!(Command::Term.signal(), Some(Signal::TERM));
        assert_eq!(Command::Up.signal(), None);
    }

    #[test]
    fn junk_is_skipped() {
        let cmds: Vec<_> = Command::parse_all(b"u\n\xffdzx").collect();
        assert_eq!(cmds, vec![Command::Up, Command::Down, Command::Exit]);
    }
}
