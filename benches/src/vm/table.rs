//! The Markdown table of `--vm`: Clove beside QEMU (and Firecracker's column), the ratio, the
//! target and the published anchor (`/work/shared/ANCHORS.md`, real hardware: context only).

use std::fmt::Write;
use std::time::Duration;

use super::{median, on_path, Figures, Idle, Options};
use crate::BoxError;

/// Targets (the microVM benchmark issue).
const BOOT_MAX_VS_QEMU: f64 = 0.5;
const EXEC_MAX_SHARE_OF_BOOT: f64 = 0.01;
const OVERHEAD_MAX_MIB: f64 = 3.0;

pub fn render(o: &Options, figures: &[Figures], qemu_absent: Option<&str>) -> String {
    let clove = &figures[0];
    let qemu = figures.get(1);
    let qemu_cell = |cell: &dyn Fn(&Figures) -> String| match qemu {
        Some(q) => cell(q),
        None => qemu_absent.unwrap_or("n/a").to_string(),
    };
    let firecracker = if on_path("firecracker") {
        "n/a (firecracker is on PATH; this benchmark does not drive it yet)"
    } else {
        "n/a (no firecracker on PATH)"
    };
    let mut rows: Vec<[String; 7]> = Vec::new();

    let boot_ratio = ratio(&clove.boot, qemu.map(|q| &q.boot));
    rows.push([
        format!("boot to guest agent ready (HELLO on vsock port 1024), median of {}", o.boots),
        times(&clove.boot),
        qemu_cell(&|q| times(&q.boot)),
        firecracker.into(),
        show_ratio(boot_ratio),
        format!(
            "≤ {BOOT_MAX_VS_QEMU}× QEMU {}; ≤ 1.0× Firecracker (n/a)",
            verdict(boot_ratio.map(|r| r <= BOOT_MAX_VS_QEMU))
        ),
        "Firecracker ≤ 125 ms; QEMU microvm ≈ 200–580 ms".into(),
    ]);

    let exec_share = match (&clove.exec, &clove.boot) {
        (Ok(e), Ok(b)) if !e.is_empty() && !b.is_empty() => Some(secs(median(e)) / secs(median(b))),
        _ => None,
    };
    rows.push([
        format!("EXEC round trip (`echo hi`, control port), median of {}", o.execs),
        times(&clove.exec),
        qemu_cell(&|q| times(&q.exec)),
        firecracker.into(),
        show_ratio(ratio(&clove.exec, qemu.map(|q| &q.exec))),
        format!(
            "≤ 1/100 of a boot: {} {}",
            exec_share.map_or("—".into(), |s| format!("1/{:.0}", 1.0 / s)),
            verdict(exec_share.map(|s| s <= EXEC_MAX_SHARE_OF_BOOT))
        ),
        "agentkernel: exec in a running VM 19 ms".into(),
    ]);

    let overhead = |i: &Idle| i.overhead_kib / 1024.0;
    let clove_mib = clove.idle.as_ref().ok().map(overhead);
    rows.push([
        format!("host memory per idle VM beyond its guest's touched pages ({} idle VMs)", o.idle),
        idle_cell(&clove.idle),
        qemu_cell(&|q| idle_cell(&q.idle)),
        firecracker.into(),
        match (clove_mib, qemu.and_then(|q| q.idle.as_ref().ok()).map(overhead)) {
            (Some(c), Some(q)) => format!("{:.2}×", c / q.max(f64::MIN_POSITIVE)),
            _ => "—".into(),
        },
        format!("≤ {OVERHEAD_MAX_MIB:.0} MiB {}", verdict(clove_mib.map(|m| m <= OVERHEAD_MAX_MIB))),
        "Firecracker ≤ 5 MiB; Cloud Hypervisor ≈ 13 MiB; QEMU tens of MiB".into(),
    ]);

    let guest =
        |i: &Result<Idle, BoxError>| i.as_ref().map_or("—".into(), |i| format!("{:.1} MiB", i.guest_kib / 1024.0));
    rows.push([
        format!("guest RAM touched per idle VM (of {} MiB)", o.memory_mib),
        guest(&clove.idle),
        qemu_cell(&|q| guest(&q.idle)),
        firecracker.into(),
        "—".into(),
        "—".into(),
        "—".into(),
    ]);

    rows.push([
        format!("{} VMs started at once, until all are ready, median of {}", o.concurrent, o.concurrent_runs),
        times(&clove.concurrent),
        qemu_cell(&|q| times(&q.concurrent)),
        firecracker.into(),
        show_ratio(ratio(&clove.concurrent, qemu.map(|q| &q.concurrent))),
        "—".into(),
        "—".into(),
    ]);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "## microVM: Clove beside QEMU `-M microvm -accel kvm` (emulated SVM machine, nested KVM; \
         1 vCPU, {} MiB per VM)\n",
        o.memory_mib
    );
    let _ =
        writeln!(out, "| measure | Clove | QEMU microvm | Firecracker | Clove / QEMU | target | published anchor |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    let _ = write!(
        out,
        "\nEvery Clove and QEMU figure is from the emulated machine (QEMU TCG with nested SVM): compare \
         them by ratio only. Published anchors are real hardware, for context."
    );
    out
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Median (min–max) in ms, or why there is none.
fn times(samples: &Result<Vec<Duration>, BoxError>) -> String {
    match samples {
        Ok(s) if s.is_empty() => "—".into(),
        Ok(s) => {
            let ms = |d: Duration| secs(d) * 1e3;
            let (min, max) = (s.iter().min().copied().unwrap_or_default(), s.iter().max().copied().unwrap_or_default());
            let digits = if ms(median(s)) < 10.0 { 2 } else { 0 };
            format!("{:.*} ms ({:.*}–{:.*})", digits, ms(median(s)), digits, ms(min), digits, ms(max))
        }
        Err(e) => format!("FAILED: {}", one_line(e)),
    }
}

fn idle_cell(idle: &Result<Idle, BoxError>) -> String {
    match idle {
        Ok(i) => match i.private_kib {
            Some(p) => format!("{:.1} MiB RSS ({:.1} MiB private)", i.overhead_kib / 1024.0, p / 1024.0),
            None => format!("{:.2} MiB", i.overhead_kib / 1024.0),
        },
        Err(e) => format!("FAILED: {}", one_line(e)),
    }
}

fn ratio(clove: &Result<Vec<Duration>, BoxError>, other: Option<&Result<Vec<Duration>, BoxError>>) -> Option<f64> {
    match (clove, other?) {
        (Ok(c), Ok(q)) if !c.is_empty() && !q.is_empty() => {
            Some(secs(median(c)) / secs(median(q)).max(f64::MIN_POSITIVE))
        }
        _ => None,
    }
}

fn show_ratio(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}×"))
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "(met)",
        Some(false) => "(missed)",
        None => "(not measured)",
    }
}

fn one_line(e: &BoxError) -> String {
    e.to_string().lines().next().unwrap_or_default().replace('|', "/")
}
