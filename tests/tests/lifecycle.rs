//! Process lifecycle on the real kernel: exact exec details, exit codes, parents, bursts.

use sensor_tests::*;
use serde_json::Value;

#[test]
fn exec_reports_exact_argv_resolved_executables_and_exit_code() {
    let Some(sensor) = Sensor::start("exec_exact") else {
        return;
    };
    let grpc = sensor.subscribe("grpc.json");
    let done = marker("exec-exact-done");

    let shell_pid: u32 = bash(&format!(
        "echo $$; /usr/bin/env -i /bin/sh -c 'exit 7' x '' 'b c'; /usr/bin/true {done}"
    ))
    .trim()
    .parse()
    .unwrap();
    let events = sensor.events_until_marker(&done);

    let env = with_arg(&events, "exec", "/usr/bin/env");
    let env = env.iter().find(|e| {
        args(e)
            == [
                "/usr/bin/env",
                "-i",
                "/bin/sh",
                "-c",
                "exit 7",
                "x",
                "",
                "b c",
            ]
    });
    let env = env.expect("exec of env with exact argv");
    assert_eq!(process_str(env, "executable"), "/usr/bin/env");
    assert_eq!(env["process"]["args_count"], 8);
    assert_eq!(env["process"]["parent"]["pid"], shell_pid);
    let entity = env["process"]["entity_id"].as_str().unwrap();
    let shell = events
        .iter()
        .find(|e| e["process"]["pid"] == shell_pid && action(e) == "fork");
    let shell_entity = shell.map(|e| e["process"]["entity_id"].clone());
    assert_eq!(
        Some(env["process"]["parent"]["entity_id"].clone()),
        shell_entity,
        "parent entity id"
    );

    let sh: Vec<&Value> = about(&events, entity)
        .into_iter()
        .filter(|e| action(e) == "exec")
        .collect();
    let sh = sh
        .iter()
        .find(|e| args(e) == ["/bin/sh", "-c", "exit 7", "x", "", "b c"]);
    let sh = sh.expect("exec of sh in the same process");
    let real_sh = std::fs::canonicalize("/bin/sh").unwrap();
    assert_eq!(
        process_str(sh, "executable"),
        real_sh.to_str().unwrap(),
        "resolved, not /bin/sh"
    );
    assert_eq!(sh["process"]["args_count"], 6);

    let exits: Vec<&Value> = about(&events, entity)
        .into_iter()
        .filter(|e| action(e) == "exit")
        .collect();
    assert_eq!(exits.len(), 1, "one exit for the process");
    assert_eq!(exits[0]["process"]["exit_code"], 7);

    let streamed = grpc.events_until_marker(&done);
    let key = |e: &Value| {
        (
            e["event"]["sequence"].clone(),
            e["process"]["entity_id"].clone(),
            args(e),
        )
    };
    for e in [*env, *sh, exits[0]] {
        assert!(
            streamed.iter().any(|s| key(s) == key(e) && s == e),
            "gRPC stream lacks {e}"
        );
    }
}

#[test]
fn burst_of_5000_short_processes_arrives_whole() {
    let Some(sensor) = Sensor::start("burst") else {
        return;
    };
    let tag = marker("burst");
    let done = marker("burst-done");

    bash(&format!(
        "for i in $(seq 1 5000); do /usr/bin/true {tag}-$i; done; /usr/bin/true {done}"
    ));
    let events = sensor.events_until_marker(&done);

    let mut seen = vec![0u32; 5001];
    let mut entities = std::collections::HashSet::new();
    for e in events.iter().filter(|e| action(e) == "exec") {
        let a = args(e);
        if let Some(n) = a.get(1).and_then(|s| s.strip_prefix(&format!("{tag}-"))) {
            seen[n.parse::<usize>().unwrap()] += 1;
            entities.insert(e["process"]["entity_id"].as_str().unwrap().to_string());
        }
    }
    let missing: Vec<usize> = (1..=5000).filter(|&i| seen[i] != 1).collect();
    assert!(
        missing.is_empty(),
        "execs missing or doubled: {} e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let exits = events
        .iter()
        .filter(|e| {
            action(e) == "exit"
                && entities.contains(e["process"]["entity_id"].as_str().unwrap_or(""))
        })
        .count();
    assert_eq!(exits, 5000, "one exit per process");
    assert!(
        events.iter().all(|e| action(e) != "lost"),
        "no loss reported"
    );
    assert_eq!(sensor.status()["kernel_lost_total"], 0);
}

#[test]
fn hostile_arguments_are_carried_and_the_stream_survives() {
    let Some(sensor) = Sensor::start("hostile_args") else {
        return;
    };
    let grpc = sensor.subscribe("grpc.json");
    let tag = marker("hostile");
    let done = marker("hostile-done");

    bash(&format!(
        r#"/usr/bin/true {tag} $'arg\x80' $'\xff' '\xff'
        /usr/bin/true {tag}-many $(seq 1 299)
        /usr/bin/true {tag}-huge "$(head -c 131071 /dev/zero | tr '\0' A)" after
        /usr/bin/true {done}"#
    ));
    let events = sensor.events_until_marker(&done);

    let odd = with_arg(&events, "exec", &tag);
    let odd = odd.first().expect("exec with non-UTF-8 args");
    let raw = args_bytes(odd);
    assert_eq!(raw[2], b"arg\x80");
    assert_eq!(raw[3], [0xff]);
    assert_eq!(
        raw[4], br"\xff",
        "four characters stay distinct from the byte"
    );

    let many = with_arg(&events, "exec", &format!("{tag}-many"));
    let many = many.first().expect("exec with 300 args");
    assert_eq!(many["process"]["args_count"], 301);
    assert_eq!(args(many).len(), 301);
    assert_eq!(args(many)[300], "299");

    let huge = with_arg(&events, "exec", &format!("{tag}-huge"));
    let huge = huge.first().expect("exec with a 128 KiB argument");
    assert_eq!(huge["process"]["args_count"], 4, "true count kept");
    assert_eq!(
        huge["sensor"]["process"]["args_truncated"], true,
        "cut is flagged"
    );
    assert!(huge["sensor"]["truncated"]
        .as_array()
        .unwrap()
        .contains(&"process.args".into()));
    assert_eq!(
        args(huge)[..2],
        ["/usr/bin/true".to_string(), format!("{tag}-huge")]
    );

    let streamed = grpc.events_until_marker(&done);
    assert!(
        streamed.iter().any(|e| args_bytes(e) == raw),
        "non-UTF-8 exec on the gRPC stream"
    );
}

#[test]
fn a_full_ring_buffer_is_reported_as_loss_per_cpu_never_as_a_silent_gap() {
    // The smallest ring buffer the config allows holds a handful of exec records, so a burst
    // of parallel execs must overflow it.
    let Some(sensor) = Sensor::start_with_config("ring_full", "ring_buffer_bytes = 4096\n") else {
        return;
    };
    let tag = marker("ringfull");
    let done = marker("ringfull-done");

    // Each exec record carries a 2.5 KB argument, so two queued at once overflow the ring
    // even on a slow guest where the reader keeps up with small records.
    bash(&format!(
        r#"pad=$(head -c 2500 /dev/zero | tr '\0' p)
        for i in $(seq 1 2000); do /usr/bin/true {tag}-$i "$pad" & done; wait"#
    ));
    // The marker's own record can be lost too while other tests fill this tiny ring: it is
    // sent again until one arrives.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !sensor
        .events()
        .iter()
        .any(|e| action(e) == "exec" && args(e).contains(&done))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no marker arrived in 60 s"
        );
        bash(&format!("/usr/bin/true {done}"));
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // Loss counters are read on a timer; give it a few periods to publish them.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let events = sensor.events();

    let delivered = events
        .iter()
        .filter(|e| action(e) == "exec" && args(e).get(1).is_some_and(|a| a.starts_with(&tag)))
        .count();
    let lost: Vec<&serde_json::Value> = events.iter().filter(|e| action(e) == "lost").collect();
    let reported: u64 = lost
        .iter()
        .map(|e| e["sensor"]["lost"]["count"].as_u64().expect("count"))
        .sum();
    assert!(
        delivered < 2000,
        "the burst did not overflow 4 KiB; the test proves nothing"
    );
    assert!(
        !lost.is_empty(),
        "{} of 2000 execs arrived and no loss was reported",
        delivered
    );
    for e in &lost {
        assert_eq!(e["sensor"]["lost"]["source"], "kernel", "{e}");
        assert!(
            e["sensor"]["lost"]["cpu"].is_u64(),
            "loss names its CPU: {e}"
        );
    }
    let status = sensor.status();
    let per_cpu: u64 = status["kernel_lost_per_cpu"]
        .as_array()
        .expect("per-CPU counters")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(status["kernel_lost_total"], per_cpu, "{status}");
    assert!(
        per_cpu >= reported && reported > 0,
        "status ({per_cpu}) covers the lost events ({reported})"
    );
}
