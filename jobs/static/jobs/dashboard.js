// The operations dashboard: draws images per minute with uPlot and refreshes every figure from the
// JSON endpoint every few seconds. The page is complete without it (the server renders the same
// figures as tables); this only keeps them current and adds the chart.
"use strict";

(function () {
  const root = document.getElementById("rp-dashboard");
  const refreshUrl = root.dataset.refreshUrl;
  const refreshSeconds = Number(root.dataset.refreshSeconds);
  let chart = null;

  const hms = (iso) => iso.substring(11, 19); // Django writes UTC datetimes as ISO 8601
  const hm = (iso) => iso.substring(11, 16);
  const minuteOf = (seconds) => hm(new Date(seconds * 1000).toISOString());

  function cell(content) {
    const td = document.createElement("td");
    if (content instanceof Node) td.append(content);
    else td.textContent = String(content);
    return td;
  }

  function link(href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = String(text);
    return a;
  }

  function fillTable(id, rows, columns, emptyText) {
    const body = document.querySelector(`#${id} tbody`);
    const trs = rows.map((cells) => {
      const tr = document.createElement("tr");
      tr.append(...cells.map(cell));
      return tr;
    });
    if (!trs.length) {
      const tr = document.createElement("tr");
      const td = cell(emptyText);
      td.colSpan = columns;
      tr.append(td);
      trs.push(tr);
    }
    body.replaceChildren(...trs);
  }

  function progress(job) {
    const span = document.createElement("span");
    const bar = document.createElement("progress");
    bar.value = job.finished;
    bar.max = job.total;
    span.append(bar, ` ${job.finished} / ${job.total}`);
    return span;
  }

  function drawChart(data) {
    const series = [
      data.minutes.map((m) => Date.parse(m.minute) / 1000),
      data.minutes.map((m) => m.measured),
      data.minutes.map((m) => m.failed),
    ];
    if (chart) {
      chart.setData(series);
      return;
    }
    const target = document.getElementById("rp-chart");
    chart = new uPlot(
      {
        width: Math.max(400, target.clientWidth),
        height: 260,
        series: [
          { label: "minute (UTC)", value: (u, ts) => (ts == null ? "--" : minuteOf(ts)) },
          { label: "measured", stroke: "#2e7d32", fill: "rgba(46,125,50,0.12)", width: 2 },
          { label: "failed", stroke: "#c62828", fill: "rgba(198,40,40,0.12)", width: 2 },
        ],
        axes: [{ values: (u, splits) => splits.map(minuteOf) }, { label: "images per minute" }],
      },
      series,
      target,
    );
    window.addEventListener("resize", () => chart.setSize({ width: Math.max(400, target.clientWidth), height: 260 }));
  }

  function render(data) {
    document.getElementById("rp-now").textContent = hms(data.now);
    for (const element of root.querySelectorAll("[data-figure]")) {
      element.textContent = element.dataset.figure.split(".").reduce((value, key) => value[key], data);
    }
    drawChart(data);
    fillTable(
      "rp-minutes",
      data.minutes.slice().reverse().map((m) => [hm(m.minute), m.measured, m.failed]),
      3,
      "",
    );
    fillTable(
      "rp-jobs",
      data.jobs.oldest.map((job) => [link(job.url, job.id), `${job.age_seconds} s`, progress(job), job.failed]),
      4,
      "none",
    );
    fillTable(
      "rp-causes",
      data.failure_causes.map((row) => [link(row.url, row.cause), row.images]),
      2,
      "none",
    );
    if (data.clients) {
      fillTable(
        "rp-clients",
        data.clients.map((row) => [
          link(row.url, row.client ?? "(anonymous)"),
          row.measured,
          row.failed,
          `${row.share.toFixed(1)} %`,
        ]),
        4,
        "none",
      );
    }
    const workers = data.clusters.flatMap((cluster) =>
      cluster.workers.map((worker) => [
        `${cluster.name} on ${cluster.host}`,
        cluster.status,
        `${cluster.uptime_seconds} s`,
        worker.name,
        worker.last_outcome ? `${hms(worker.last_outcome)} (${worker.last_outcome_age} s ago)` : "none in the last hour",
      ]),
    );
    fillTable("rp-workers", workers, 5, "no qcluster heartbeat: no worker runs");
  }

  async function refresh() {
    const live = document.getElementById("rp-live");
    try {
      const response = await fetch(refreshUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok || response.redirected) throw new Error(`HTTP ${response.status}`);
      render(await response.json());
      live.textContent = ` (refreshed every ${refreshSeconds} s)`;
    } catch (error) {
      live.textContent = ` (refresh failed: ${error.message}; reload the page, your session may have ended)`;
    }
  }

  render(JSON.parse(document.getElementById("rp-dashboard-data").textContent));
  document.getElementById("rp-live").textContent = ` (refreshed every ${refreshSeconds} s)`;
  setInterval(refresh, refreshSeconds * 1000);
})();
