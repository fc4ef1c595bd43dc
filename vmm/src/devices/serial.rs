//! The serial console: a 16550A UART (vm-superio) on COM1. What the guest writes is discarded, or
//! kept in a bounded log (the newest bytes) when the VM's config asks for one. The guest gets no
//! input.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use vm_superio::{Serial, Trigger};

use super::{BusDevice, IrqLine};

/// The last `capacity` bytes the guest wrote to its console, shared with the host.
#[derive(Clone)]
pub struct SerialLog {
    bytes: Arc<Mutex<VecDeque<u8>>>,
    capacity: usize,
}

impl SerialLog {
    pub fn new(capacity: usize) -> SerialLog {
        SerialLog { bytes: Arc::new(Mutex::new(VecDeque::new())), capacity }
    }

    /// A copy of what is kept, oldest first.
    pub fn contents(&self) -> Vec<u8> {
        // A panic while holding this lock leaves whole bytes in the buffer: still worth reading.
        let bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        bytes.iter().copied().collect()
    }

    fn append(&self, data: &[u8]) {
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        let keep = data.len().min(self.capacity);
        let overflow = (bytes.len() + keep).saturating_sub(self.capacity);
        bytes.drain(..overflow);
        bytes.extend(&data[data.len() - keep..]);
    }
}

/// Where the UART's output goes.
enum Output {
    Discard,
    Log(SerialLog),
}

impl io::Write for Output {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Output::Log(log) = self {
            log.append(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The UART's interrupt, raised through the VM's interrupt line for COM1.
struct Interrupt(Arc<dyn IrqLine>);

impl Trigger for Interrupt {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.trigger()
    }
}

/// COM1 as a port-I/O bus device (8 registers).
pub struct SerialConsole {
    uart: Serial<Interrupt, vm_superio::serial::NoEvents, Output>,
}

impl SerialConsole {
    /// A console whose output is kept in `log`, or discarded when there is none.
    pub fn new(irq: Arc<dyn IrqLine>, log: Option<SerialLog>) -> SerialConsole {
        let output = log.map_or(Output::Discard, Output::Log);
        SerialConsole { uart: Serial::new(Interrupt(irq), output) }
    }
}

impl BusDevice for SerialConsole {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Ok(offset), Some(first)) = (u8::try_from(offset), data.first_mut()) {
            *first = self.uart.read(offset);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), Some(&value)) = (u8::try_from(offset), data.first()) {
            // The only failure is a lost interrupt (the eventfd is full or closed at teardown);
            // the guest's driver polls the line status too, so it carries on.
            let _ = self.uart.write(offset, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keeps_only_the_newest_bytes() {
        let log = SerialLog::new(4);
        log.append(b"ab");
        log.append(b"cde");
        assert_eq!(log.contents(), b"bcde");
        log.append(b"0123456789");
        assert_eq!(log.contents(), b"6789");
    }
}
