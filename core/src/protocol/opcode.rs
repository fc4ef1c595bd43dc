//! Opcode numbers. They keep the seed Clove's map so its users recognise them; new opcodes take free
//! numbers.

macro_rules! opcodes {
    ($($name:ident = $value:literal,)*) => {
        /// Every opcode the protocol defines. Some are reserved for services that later issues add;
        /// the runtime answers those with [`ErrorCode::Unsupported`](super::ErrorCode::Unsupported).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        #[allow(non_camel_case_types)] // the seed's names, as its users know them

        pub enum Opcode {
            $($name = $value,)*
        }

        impl Opcode {
            /// Every opcode, in numeric order.
            pub const ALL: &'static [Opcode] = &[$(Opcode::$name,)*];

            /// The opcode with this number, if the protocol defines one.
            pub fn from_u8(value: u8) -> Option<Opcode> {
                match value {
                    $($value => Some(Opcode::$name),)*
                    _ => None,
                }
            }

            /// The seed's upper-case name (`"EXEC"`), as the SDK and the audit log show it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Opcode::$name => stringify!($name),)*
                }
            }
        }
    };
}

opcodes! {
    NOOP = 0x00,
    THINK = 0x01,
    EXEC = 0x02,
    READ = 0x03,
    WRITE = 0x04,
    SPAWN = 0x10,
    KILL = 0x11,
    LIST = 0x12,
    PAUSE = 0x14,
    RESUME = 0x15,
    SEND = 0x20,
    RECV = 0x21,
    BROADCAST = 0x22,
    REGISTER = 0x23,
    STORE = 0x30,
    FETCH = 0x31,
    DELETE = 0x32,
    KEYS = 0x33,
    GET_PERMS = 0x40,
    SET_PERMS = 0x41,
    HTTP = 0x50,
    SUBSCRIBE = 0x60,
    UNSUBSCRIBE = 0x61,
    POLL_EVENTS = 0x62,
    EMIT = 0x63,
    RECORD_START = 0x70,
    RECORD_STOP = 0x71,
    RECORD_STATUS = 0x72,
    REPLAY_START = 0x73,
    REPLAY_STATUS = 0x74,
    GET_AUDIT_LOG = 0x76,
    SET_AUDIT_CONFIG = 0x77,
    ASYNC_POLL = 0x80,
    WORLD_CREATE = 0xA0,
    WORLD_DESTROY = 0xA1,
    WORLD_LIST = 0xA2,
    WORLD_JOIN = 0xA3,
    WORLD_LEAVE = 0xA4,
    WORLD_EVENT = 0xA5,
    WORLD_STATE = 0xA6,
    WORLD_SNAPSHOT = 0xA7,
    WORLD_RESTORE = 0xA8,
    TUNNEL_CONNECT = 0xB0,
    TUNNEL_DISCONNECT = 0xB1,
    TUNNEL_STATUS = 0xB2,
    TUNNEL_LIST_REMOTES = 0xB3,
    TUNNEL_CONFIG = 0xB4,
    METRICS_SYSTEM = 0xC0,
    METRICS_AGENT = 0xC1,
    METRICS_ALL_AGENTS = 0xC2,
    METRICS_CGROUP = 0xC3,
    HELLO = 0xFE,
    EXIT = 0xFF,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_opcode_round_trips_through_its_number() {
        for &op in Opcode::ALL {
            assert_eq!(Opcode::from_u8(op as u8), Some(op), "{}", op.name());
        }
        assert_eq!(Opcode::from_u8(0x99), None);
        assert_eq!(Opcode::EXEC as u8, 0x02);
        assert_eq!(Opcode::HELLO.name(), "HELLO");
    }
}
