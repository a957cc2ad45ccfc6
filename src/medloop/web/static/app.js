// medloop dashboards: sortable tables, Plotly charts from the page's JSON data, live refresh of
// the fleet page, campaign progress polling and worklist actions. No inline scripts (CSP).
"use strict";

(function () {
  const main = document.getElementById("main");
  const csrf = main ? main.dataset.csrf || "" : "";
  const dataNode = document.getElementById("page-data");
  const page = dataNode ? JSON.parse(dataNode.textContent) : null;
  const palette = { blue: "#0b5cad", red: "#b3261e", green: "#1b7f3b", grey: "#5f6368", amber: "#8a5a00" };
  const font = { family: "system-ui, 'Noto Sans SC', 'PingFang SC', sans-serif", size: 13, color: "#1f1f1f" };
  const config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  // --- sortable tables: a button in each header cell; aria-sort tells screen readers ---------
  function sortValue(cell) {
    const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    const n = Number(raw);
    return raw !== "" && !Number.isNaN(n) ? n : raw.toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    const headers = table.querySelectorAll("thead th");
    headers.forEach(function (th, index) {
      const button = th.querySelector("button");
      if (!button) return;
      button.addEventListener("click", function () {
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        rows.sort(function (a, b) {
          const x = sortValue(a.cells[index]);
          const y = sortValue(b.cells[index]);
          const order = x < y ? -1 : x > y ? 1 : 0;
          return ascending ? order : -order;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });

  // --- charts ------------------------------------------------------------------------------
  function plot(id, traces, layout) {
    const node = document.getElementById(id);
    if (!node || typeof Plotly === "undefined") return;
    const base = {
      font: font, margin: { l: 50, r: 20, t: 10, b: 40 }, height: 320,
      paper_bgcolor: "#ffffff", plot_bgcolor: "#ffffff",
      legend: { orientation: "h", y: -0.2 },
    };
    Plotly.react(node, traces, Object.assign(base, layout || {}), config);
  }

  function hline(y, color, dash, label) {
    return {
      type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y,
      line: { color: color, width: 1.5, dash: dash || "dash" }, label: label ? { text: label, textposition: "end", font: { size: 11, color: color } } : undefined,
    };
  }

  const charts = {
    overview: function (d) {
      const f = d.facilities;
      plot("chart-map", [{
        type: "scatter", mode: "markers+text", x: f.map(function (r) { return r.lon; }), y: f.map(function (r) { return r.lat; }),
        text: f.map(function (r) { return r.code; }), textposition: "top center", textfont: { size: 10 },
        customdata: f.map(function (r) { return [r.name, r.eligible === null ? "—" : r.eligible, r.coverage === null ? "—" : (100 * r.coverage).toFixed(1) + " %", r.bp_control === null ? "—" : (100 * r.bp_control).toFixed(1) + " %"]; }),
        hovertemplate: "%{customdata[0]}<br>" + d.labels.eligible + ": %{customdata[1]}<br>" + d.labels.coverage + ": %{customdata[2]}<br>" + d.labels.bp_control + ": %{customdata[3]}<extra></extra>",
        marker: {
          size: f.map(function (r) { return 8 + Math.sqrt(r.eligible || 0) / 4; }),
          color: f.map(function (r) { return r.bp_control === null ? 0 : 100 * r.bp_control; }),
          colorscale: "Viridis", cmin: 0, cmax: 100, showscale: true,
          colorbar: { title: { text: d.labels.bp_control + " %" }, thickness: 12 },
          line: { color: "#1f1f1f", width: 1 },
        },
      }], { xaxis: { title: { text: d.labels.lon }, zeroline: false }, yaxis: { title: { text: d.labels.lat }, scaleanchor: "x", zeroline: false } });
      const t = d.trends;
      plot("chart-trends", [
        { type: "bar", name: d.labels.missed_visits, x: t.months, y: t.missed_visits, marker: { color: palette.amber } },
        { type: "bar", name: d.labels.lost_to_follow_up, x: t.months, y: t.lost_to_follow_up, marker: { color: palette.red } },
        { type: "scatter", mode: "lines+markers", name: d.labels.bp_control, x: t.months, yaxis: "y2",
          y: t.bp_control.map(function (v) { return v === null ? null : 100 * v; }), line: { color: palette.green } },
        { type: "scatter", mode: "lines+markers", name: d.labels.coverage, x: t.months, yaxis: "y2",
          y: t.coverage.map(function (v) { return v === null ? null : 100 * v; }), line: { color: palette.blue, dash: "dot" } },
      ], { barmode: "group", margin: { l: 50, r: 60, t: 10, b: 40 }, yaxis: { title: { text: d.labels.count } }, yaxis2: { overlaying: "y", side: "right", range: [0, 100], title: { text: "%" } } });
    },
    patient: function (d) {
      const lines = d.lines;
      const bpShapes = [hline(lines.bp_control[0], palette.green, "dash", d.labels.target + " " + lines.bp_control[0]),
        hline(lines.bp_control[1], palette.green, "dot", d.labels.target + " " + lines.bp_control[1])];
      if (lines.bp_critical[0]) bpShapes.push(hline(lines.bp_critical[0], palette.red, "dash", d.labels.critical + " " + lines.bp_critical[0]));
      const bpAlerts = lines.alerts.filter(function (a) { return a.code === "8480-6" || a.code === "8462-4"; });
      plot("chart-bp", [
        { type: "scatter", mode: "lines+markers", name: d.labels.systolic, x: d.bp.at, y: d.bp.systolic, line: { color: palette.blue }, marker: { size: 4 } },
        { type: "scatter", mode: "lines+markers", name: d.labels.diastolic, x: d.bp.at, y: d.bp.diastolic, line: { color: palette.amber }, marker: { size: 4 } },
        { type: "scatter", mode: "markers", name: d.labels.alert, x: bpAlerts.map(function (a) { return a.at; }), y: bpAlerts.map(function (a) { return a.value; }),
          marker: { symbol: "x", size: 11, color: palette.red, line: { width: 2 } } },
      ], { shapes: bpShapes, yaxis: { title: { text: "mmHg" } } });
      const gShapes = [
        { type: "rect", xref: "paper", x0: 0, x1: 1, y0: lines.glucose_target[0], y1: lines.glucose_target[1], fillcolor: "rgba(27,127,59,0.10)", line: { width: 0 } },
      ];
      if (lines.glucose_low) gShapes.push(hline(lines.glucose_low, palette.red, "dot", d.labels.low + " " + lines.glucose_low));
      if (lines.glucose_high) gShapes.push(hline(lines.glucose_high, palette.red, "dash", d.labels.critical + " " + lines.glucose_high));
      const gAlerts = lines.alerts.filter(function (a) { return a.code === "14771-0"; });
      plot("chart-glucose", [
        { type: "scatter", mode: "lines+markers", name: d.labels.glucose, x: d.glucose.at, y: d.glucose.value, line: { color: palette.blue }, marker: { size: 4 } },
        { type: "scatter", mode: "markers", name: d.labels.alert, x: gAlerts.map(function (a) { return a.at; }), y: gAlerts.map(function (a) { return a.value; }),
          marker: { symbol: "x", size: 11, color: palette.red, line: { width: 2 } } },
      ], { shapes: gShapes, yaxis: { title: { text: "mmol/L" } } });
    },
    fleet: function (d) {
      plot("chart-rate", [{ type: "bar", x: d.per_minute.minutes.map(function (m) { return m + "Z"; }), y: d.per_minute.readings, marker: { color: palette.blue }, name: d.labels.readings }],
        { yaxis: { title: { text: d.labels.readings } }, xaxis: { type: "date" } });
    },
    screening: function (d) {
      if (!d.done || !d.summary.length) return;
      const models = Array.from(new Set(d.summary.map(function (r) { return r[0]; })));
      const categories = Array.from(new Set(d.summary.map(function (r) { return r[1]; })));
      const traces = categories.map(function (c) {
        return { type: "bar", name: c, x: models, y: models.map(function (m) {
          const row = d.summary.find(function (r) { return r[0] === m && r[1] === c; });
          return row ? row[2] : 0;
        }) };
      });
      plot("chart-summary", traces, { barmode: "stack" });
    },
  };
  if (page && charts[page.kind]) charts[page.kind](page);

  // --- live fleet: refresh the figures every 10 s ---------------------------------------------
  if (page && page.kind === "fleet") {
    setInterval(function () {
      fetch("/web/devices.json", { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) {
          if (!d) return;
          document.getElementById("fleet-total").textContent = d.total.toLocaleString();
          document.getElementById("fleet-online").textContent = d.online.toLocaleString();
          document.getElementById("fleet-hour").textContent = d.per_minute.readings.reduce(function (a, b) { return a + b; }, 0).toLocaleString();
          charts.fleet(Object.assign({}, page, d));
        });
    }, 10000);
  }

  // --- screening campaign progress ------------------------------------------------------------
  const campaign = document.getElementById("campaign");
  if (campaign && ["queued", "running"].indexOf(campaign.dataset.status) >= 0) {
    const timer = setInterval(function () {
      fetch(campaign.dataset.progressUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) {
          if (!d) return;
          document.getElementById("campaign-progress").value = d.progress || 0;
          document.getElementById("campaign-count").textContent = d.processed.toLocaleString() + (d.total_rows ? " / " + d.total_rows.toLocaleString() : "");
          if (["done", "failed", "cancelled"].indexOf(d.status) >= 0) { clearInterval(timer); window.location.reload(); }
        });
    }, 1000);
  }

  // --- worklist and MDT actions: post the form with fetch, then refresh the list ----------------
  document.querySelectorAll("form[data-async]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const status = document.getElementById("live-status");
      const body = new URLSearchParams(new FormData(form));
      fetch(form.action, { method: "POST", body: body, credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, Accept: "application/json" } })
        .then(function (r) { return r.json().then(function (d) { return { ok: r.ok, d: d }; }); })
        .then(function (res) {
          if (status) status.textContent = res.ok ? res.d.message : (res.d.detail || "error");
          if (res.ok) {
            const row = form.closest("[data-row]");
            if (row && res.d.remove) row.remove();
            else window.location.reload();
            const count = document.getElementById("worklist-count");
            if (count && res.d.remove) count.textContent = String(Math.max(0, Number(count.textContent) - 1));
          }
        });
    });
  });
})();
