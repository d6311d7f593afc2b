//! The plugins in `examples/hostile/`: each is stopped or refused with an error that
//! names the cause, and the next plugin runs fine in the same process.

use crate::support::*;
use sluice_plugin_api::Limits;
use std::time::Duration;

/// Room for what each plugin tries (CPU time counts the host's work for it too, slower
/// in a debug build), not for running on.
fn small_limits() -> Limits {
    Limits {
        cpu_time: Duration::from_secs(2),
        memory_bytes: 128 << 20,
        wall_time: Duration::from_secs(5),
        log_lines: 1_000,
        bytes_written: 1 << 20,
        ..Limits::default()
    }
}

/// 200 ms of CPU time, for the plugins that spin.
fn tight_cpu() -> Limits {
    Limits {
        cpu_time: Duration::from_millis(200),
        ..small_limits()
    }
}

async fn hostile(name: &str, limits: &Limits) -> Vec<String> {
    let report = run_with(
        &example(&format!("hostile/{name}")),
        writes_call("m f=1i 1", None),
        limits,
    )
    .await;
    assert_healthy().await;
    report
        .errors
        .iter()
        .chain(report.log_lines.iter())
        .cloned()
        .collect()
}

fn assert_error(output: &[String], expected: &str) {
    assert!(
        output
            .first()
            .is_some_and(|e| e == &format!("error executing plugin: {expected}")),
        "expected `{expected}`, got {output:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_hits_the_cpu_time_limit() {
    let output = hostile("infinite_loop.py", &tight_cpu()).await;
    assert_error(&output, "CPU time limit of 200ms exceeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_with_cpu_time_to_spare_is_stopped_by_wall_time() {
    let limits = Limits {
        cpu_time: Duration::from_secs(3600),
        wall_time: Duration::from_millis(500),
        ..small_limits()
    };
    let output = hostile("infinite_loop.py", &limits).await;
    assert_error(&output, "timed out after 500ms");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sleeping_loop_is_stopped_by_wall_time() {
    let limits = Limits {
        wall_time: Duration::from_millis(300),
        ..small_limits()
    };
    let output = hostile("sleep_loop.py", &limits).await;
    assert_error(&output, "timed out after 300ms");
}

#[tokio::test(flavor = "multi_thread")]
async fn sleeping_takes_no_cpu_time() {
    // A second asleep against 50 ms of CPU time: only the plugin's running is counted.
    let limits = Limits {
        cpu_time: Duration::from_millis(50),
        wall_time: Duration::from_secs(1),
        ..small_limits()
    };
    let output = hostile("sleep_loop.py", &limits).await;
    assert_error(&output, "timed out after 1s");
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_time_adds_up_over_the_polls_of_a_call() {
    // Each sleep ends a poll of the call: no single poll comes near the limit, their
    // sum passes it.
    let output = hostile("busy_sleeper.py", &tight_cpu()).await;
    assert_error(&output, "CPU time limit of 200ms exceeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loop_while_the_plugin_loads_hits_the_cpu_time_limit() {
    let output = hostile("loop_on_import.py", &tight_cpu()).await;
    assert_error(&output, "CPU time limit of 200ms exceeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_bomb_hits_the_memory_limit() {
    let limits = Limits {
        memory_bytes: 96 << 20,
        ..small_limits()
    };
    let output = hostile("memory_bomb.py", &limits).await;
    assert_error(&output, "memory limit of 96 MiB exceeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn unbounded_recursion_is_stopped() {
    let limits = Limits {
        cpu_time: Duration::from_secs(60),
        ..small_limits()
    };
    let output = hostile("deep_recursion.py", &limits).await;
    let error = &output[0];
    assert!(
        [
            "stack overflow",
            "RecursionError",
            "memory limit of 128 MiB exceeded"
        ]
        .iter()
        .any(|cause| error.contains(cause)),
        "unexpected error: {error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn host_files_and_the_environment_are_out_of_reach() {
    let output = hostile("read_host_files.py", &small_limits()).await;
    assert_eq!(output.len(), 6, "{output:?}");
    for line in &output[..5] {
        assert!(line.contains(": refused ("), "{line}");
    }
    assert_eq!(
        output[5],
        "INFO: environment: ['PLUGIN_DIR', 'TMPDIR', 'TZ']"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_out_of_the_plugin_directory_leads_nowhere() {
    let outside = PluginDir::new();
    outside.file("outside.txt", "secret");
    let dir = PluginDir::new();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).expect("symlink");
    let plugin = dir.plugin(
        "peek.py",
        "def process_writes(api, batches, args=None):\n    api.info(open('/plugins/escape/outside.txt').read())\n",
    );
    let report = wal(&plugin, "m f=1i").await;
    assert!(
        report.log_lines.is_empty(),
        "read through the symlink: {:?}",
        report.log_lines
    );
    assert!(report.errors[0].contains("Error"), "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_mounted_can_be_written_and_the_plugin_directory_is_not_mounted() {
    let dir = PluginDir::new();
    dir.file(".packages/shared/__init__.py", "");
    let example = example("hostile/write_plugin_dir.py");
    let code =
        std::fs::read_to_string(example.plugin_dir.join(&example.name)).expect("the example");
    let plugin = dir.plugin("write_plugin_dir.py", &code);
    let report = run_with(&plugin, writes_call("m f=1i 1", None), &small_limits()).await;
    assert_eq!(
        report.log_lines,
        [
            "INFO: /plugins/planted.py: refused (FileNotFoundError)",
            "INFO: /plugins/.packages/planted.py: refused (PermissionError)",
        ],
        "{:?}",
        report.errors
    );
    assert!(!dir.path().join("planted.py").exists());
    assert!(!dir.path().join(".packages/planted.py").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn open_files_are_bounded_and_closed_ones_counted_out() {
    let dir = PluginDir::new();
    dir.file(".packages/data.txt", "data");
    let example = example("hostile/hoard_files.py");
    let code =
        std::fs::read_to_string(example.plugin_dir.join(&example.name)).expect("the example");
    let plugin = dir.plugin("hoard_files.py", &code);
    let limits = Limits {
        open_files: 16,
        ..small_limits()
    };
    let report = run_with(&plugin, writes_call("m f=1i 1", None), &limits).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        report.log_lines,
        [
            "WARN: open files limit of 16 reached: opening another file or listing a \
             directory fails with EDQUOT until one is closed",
            "INFO: held 16: EDQUOT",
        ]
    );
    assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn filling_tmp_stops_at_the_calls_limit() {
    let limits = Limits {
        tmp_bytes: 1 << 20,
        ..small_limits()
    };
    let output = hostile("fill_tmp.py", &limits).await;
    // The file counts 4 KiB, so 15 writes of 64 KiB fit; the 16th writes the 60 KiB left
    // and fails there, and deleting the file gives nothing back: no directory fits.
    assert_eq!(
        output[..2],
        [
            format!("INFO: wrote {}: ENOSPC", 15 * 65536),
            "INFO: made 0: ENOSPC".to_string()
        ],
        "{output:?}"
    );
    assert!(
        output[2].contains("/tmp is full: a call may write 1 MiB"),
        "{output:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sockets_cannot_be_opened() {
    let output = hostile("open_socket.py", &small_limits()).await;
    assert_eq!(output.len(), 2, "{output:?}");
    assert!(
        output.iter().all(|l| l.contains(": refused (")),
        "{output:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_flood_hits_the_log_limit() {
    let output = hostile("log_flood.py", &small_limits()).await;
    assert_error(&output, "log limit of 1000 lines exceeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn printed_output_is_bounded() {
    let limits = Limits {
        output_bytes: 64 << 10,
        cpu_time: Duration::from_secs(60),
        ..small_limits()
    };
    let report = run_with(
        &example("hostile/print_flood.py"),
        writes_call("m f=1i", None),
        &limits,
    )
    .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let captured: usize = report
        .log_lines
        .iter()
        .filter(|l| l.starts_with("INFO: xxx"))
        .map(|l| l.len() - 6)
        .sum();
    assert!(captured <= 64 << 10, "captured {captured} bytes");
    assert!(
        report
            .log_lines
            .iter()
            .any(|l| l.starts_with("WARN: ") && l.contains("bytes of output dropped"))
    );
    // The plugin's own log lines come first; captured output is forwarded after the call.
    assert_eq!(
        report.log_lines[0],
        "INFO: still running after printing 20 MB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gigantic_write_hits_the_write_limit() {
    // The 20 MB text is held in a few copies on its way to the door, beside the 72 MiB the
    // runtime starts with: room for them, so that the write limit is what stops it.
    let limits = Limits {
        cpu_time: Duration::from_secs(60),
        wall_time: Duration::from_secs(60),
        memory_bytes: 192 << 20,
        ..small_limits()
    };
    let output = hostile("gigantic_write.py", &limits).await;
    assert_error(&output, "write limit of 1 MiB exceeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn threads_and_processes_cannot_be_started() {
    let output = hostile("spawn.py", &small_limits()).await;
    assert_eq!(output.len(), 3, "{output:?}");
    assert!(
        output.iter().all(|l| l.contains(": refused (")),
        "{output:?}"
    );
}
