//! Process life cycle of real nodes: SIGTERM, SIGSTOP/SIGCONT, restarts on the same data, and refusing
//! data that is not the node's.

use anyhow::ensure;
use flotilla_shared::NodeId;
use flotilla_tests::{run_to_exit, wait_until, Cluster, Options};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_stop_on_sigterm_freeze_on_sigstop_and_restart_on_their_data() {
    let mut cluster = Cluster::start(3, Options::default())
        .await
        .expect("start 3 nodes");
    let result = async {
        let (one, two, three) = (NodeId(1), NodeId(2), NodeId(3));
        for id in cluster.ids() {
            let status = cluster.client(id).status().await?;
            ensure!(status.id == id, "node {id} says it is {}", status.id);
        }

        // SIGTERM: a graceful stop, well before the harness would resort to SIGKILL.
        let graceful = cluster.terminate(two, Duration::from_secs(5)).await?;
        ensure!(graceful, "node {two} did not exit within 5 s of SIGTERM");
        ensure!(
            cluster.client(two).status().await.is_err(),
            "a stopped node answered"
        );
        cluster.restart(two).await?;

        // SIGSTOP freezes the node (its status request times out); SIGCONT brings it back.
        cluster.pause(three)?;
        ensure!(
            cluster.client(three).status().await.is_err(),
            "a SIGSTOPped node answered"
        );
        cluster.resume(three)?;
        wait_until(
            Duration::from_secs(5),
            "node 3 answers after SIGCONT",
            async || cluster.client(three).status().await.ok(),
        )
        .await?;

        // kill -9 and restart on the same port and data.
        cluster.kill(one)?;
        cluster.restart(one).await?;
        ensure!(cluster.node(one).starts == 2);
        ensure!(cluster.client(one).status().await?.id == one);
        Ok(())
    }
    .await;
    cluster.finish(result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_data_that_is_not_its_own() {
    let mut cluster = Cluster::start(1, Options::default())
        .await
        .expect("start 1 node");
    let result = async {
        let id = NodeId(1);
        ensure!(
            cluster.terminate(id, Duration::from_secs(5)).await?,
            "SIGTERM"
        );
        let db = cluster.node(id).data_dir.join("node-1.db");
        ensure!(db.is_file(), "{} was created", db.display());

        // The same data dir under another cluster id: a one-line refusal naming file and ids.
        let other = Options {
            cluster_id: "another-cluster".into(),
            ..cluster.options().clone()
        };
        let output =
            run_to_exit(cluster.node_command(id, &other)?, Duration::from_secs(15)).await?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        ensure!(
            !output.status.success(),
            "started on another cluster's data: {said}"
        );
        let line = said
            .lines()
            .find(|line| line.contains("another-cluster"))
            .unwrap_or_default();
        ensure!(
            line.contains("node-1.db") && line.contains("\"e2e\""),
            "the refusal names the file and both cluster ids on one line: {said}"
        );

        // A file that is not a database at all.
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 31 + 7) as u8).collect();
        let saved = std::fs::read(&db)?;
        std::fs::write(&db, &garbage)?;
        for extra in ["node-1.db-wal", "node-1.db-shm"] {
            let _ = std::fs::remove_file(cluster.node(id).data_dir.join(extra));
        }
        let output = run_to_exit(
            cluster.node_command(id, cluster.options())?,
            Duration::from_secs(15),
        )
        .await?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        ensure!(
            !output.status.success(),
            "started on a garbage file: {said}"
        );
        ensure!(said.contains("node-1.db"), "names the file: {said}");
        ensure!(
            std::fs::read(&db)? == garbage,
            "the garbage file was modified instead of refused"
        );

        // With its own data back, the node starts again.
        std::fs::write(&db, &saved)?;
        cluster.restart(id).await?;
        ensure!(cluster.client(id).status().await?.id == id);
        Ok(())
    }
    .await;
    cluster.finish(result);
}
