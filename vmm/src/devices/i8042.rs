//! The i8042 keyboard controller, reduced to what a guest uses to stop: writing 0xFE (pulse the
//! reset line) to its command port 0x64, which Linux does to reboot with `reboot=k`. Its
//! registers otherwise read 0 (no data, input buffer empty) and ignore writes.

use std::convert::Infallible;

use vm_superio::{I8042Device, Trigger};

use super::BusDevice;

/// What to do when the guest resets the machine.
struct OnReset(Box<dyn Fn() + Send>);

impl Trigger for OnReset {
    type E = Infallible;

    fn trigger(&self) -> Result<(), Infallible> {
        (self.0)();
        Ok(())
    }
}

/// The controller at ports 0x60..=0x64 (offset 4 is the command port).
pub struct I8042 {
    device: I8042Device<OnReset>,
}

impl I8042 {
    /// A controller that calls `on_reset` each time the guest pulses the reset line.
    pub fn new(on_reset: impl Fn() + Send + 'static) -> I8042 {
        I8042 { device: I8042Device::new(OnReset(Box::new(on_reset))) }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = u8::try_from(offset).map_or(0, |offset| self.device.read(offset));
        data.fill(value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), Some(&value)) = (u8::try_from(offset), data.first()) {
            let Ok(()) = self.device.write(offset, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn only_0xfe_on_the_command_port_resets() {
        let resets = Arc::new(AtomicUsize::new(0));
        let counter = resets.clone();
        let mut i8042 = I8042::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        i8042.write(0, &[0xfe]);
        i8042.write(4, &[0xfd]);
        let mut status = [0xaa];
        i8042.read(4, &mut status);
        assert_eq!(status, [0], "input buffer empty, so the guest's reset loop does not wait");
        assert_eq!(resets.load(Ordering::SeqCst), 0);
        i8042.write(4, &[0xfe]);
        assert_eq!(resets.load(Ordering::SeqCst), 1);
    }
}
