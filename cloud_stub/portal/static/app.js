"use strict";
// The fleet portal's dashboard: plain DOM, the JSON API and one server-sent event stream.
(function () {
  const $ = (id) => document.getElementById(id);
  let me = null;
  let stream = null;

  function text(id, value) { $(id).textContent = value === null || value === undefined ? "–" : String(value); }
  function yesNo(v, yes, no) { return v === null || v === undefined ? "–" : (v ? yes : no); }
  function list(id, items) {
    const ul = $(id);
    ul.replaceChildren(...items.map((t) => { const li = document.createElement("li"); li.textContent = t; return li; }));
  }

  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && me) headers["X-CSRF-Token"] = me.csrf_token;
    const response = await fetch(path, { method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const error = new Error(data && data.error ? data.error.message : response.statusText);
      error.code = data && data.error ? data.error.code : String(response.status);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function show(section) {
    for (const id of ["login", "fleet", "vehicle"]) $(id).hidden = id !== section;
    $("who").hidden = section === "login";
  }

  function listen(path, onData) {
    if (stream) stream.close();
    stream = new EventSource(path);
    stream.onopen = () => $("live").classList.add("on");
    stream.onerror = () => $("live").classList.remove("on");
    stream.onmessage = (event) => onData(JSON.parse(event.data));
  }

  function route() {
    if (!me) { if (stream) stream.close(); show("login"); return; }
    const match = location.hash.match(/^#\/vehicle\/([A-HJ-NPR-Z0-9]{17})$/);
    if (match) openVehicle(match[1]); else openFleet();
  }

  // --- fleet ---------------------------------------------------------------------------
  function openFleet() {
    show("fleet");
    const manages = me.user.role !== "driver";
    $("add-form").hidden = !manages;
    listen("/api/events", (data) => { if (data.type === "vehicles") renderFleet(data.vehicles); });
  }

  function renderFleet(vehicles) {
    const body = $("vehicle-list").tBodies[0];
    $("no-vehicles").hidden = vehicles.length > 0;
    body.replaceChildren(...vehicles.map((v) => {
      const s = v.status || {};
      const tr = document.createElement("tr");
      tr.dataset.vin = v.vin;
      const cells = [
        v.vin + (v.removed ? " (removed)" : ""),
        s.soc === null || s.soc === undefined ? "–" : s.soc.toFixed(1) + " %",
        yesNo(s.locked, "locked", "unlocked"),
        yesNo(s.all_closed, "all closed", "open"),
        s.last_t_ms === null || s.last_t_ms === undefined ? "–" : "t=" + (s.last_t_ms / 1000).toFixed(0) + " s",
        v.services.join(", ") || "none",
      ];
      cells.forEach((c, i) => { const td = document.createElement("td"); td.textContent = c; td.className = ["vin", "soc", "lock", "closed", "seen", "services"][i]; tr.append(td); });
      tr.addEventListener("click", () => { location.hash = "#/vehicle/" + v.vin; });
      return tr;
    }));
  }

  // --- one vehicle ---------------------------------------------------------------------
  function openVehicle(vin) {
    show("vehicle");
    text("v-vin", vin);
    text("vehicle-error", "");
    $("vehicle").dataset.vin = vin;
    listen("/api/events?vin=" + vin, (data) => {
      if (data.type === "vehicle") renderVehicle(data.vehicle, data.commands);
      else if (data.type === "gone") { text("vehicle-error", data.message); stream.close(); }
    });
    // A refused stream (404) shows nothing; ask the API once for the reason.
    api("GET", "/api/vehicles/" + vin).catch((e) => { $("vehicle-error").textContent = e.message; });
  }

  function reasons(verdict) { return verdict ? verdict.reasons.map((r) => r.message || r.code) : []; }

  function renderVehicle(v, commands) {
    const s = v.status || {};
    text("soc", s.soc === null || s.soc === undefined ? null : s.soc.toFixed(1) + " %");
    text("plug", s.plug_connected === undefined ? null :
      yesNo(s.plug_connected, "connected", "not connected") + (s.plug_locked ? ", locked" : "") +
      (s.infrastructure_connected ? ", infrastructure " + (s.infrastructure || "?") : ""));
    const session = s.sessions && s.sessions.charging;
    text("charging", (s.charging_status || "–") + (session ? " (session " + session.session_id + ": " + session.to_state + ")" : ""));
    const charge = s.verdicts && s.verdicts.charging;
    text("charge-verdict", charge ? charge.outcome : null);
    list("charge-reasons", reasons(charge));
    text("lock-state", yesNo(s.locked, "locked", "unlocked"));
    const doors = s.doors_open || {};
    const windows = s.windows_open_percent || {};
    list("openings", [
      ...Object.entries(doors).map(([k, o]) => k + " door: " + yesNo(o, "open", "closed")),
      ...Object.entries(windows).map(([k, p]) => k + " window: " + (p === null ? "–" : (p > 0 ? p.toFixed(0) + " % open" : "closed"))),
      "bonnet: " + yesNo(s.bonnet_open, "open", "closed"),
    ]);
    list("tyres", Object.entries(s.tyres_kpa || {}).map(([k, p]) => k + ": " + (p === null ? "–" : p.toFixed(0))));
    text("precond", yesNo(s.preconditioning_enabled, "yes", "no"));
    const dep = s.departure_min_utc;
    text("departure", dep === null || dep === undefined ? null :
      String(Math.floor(dep / 60)).padStart(2, "0") + ":" + String(Math.round(dep % 60)).padStart(2, "0"));
    const pre = s.verdicts && s.verdicts.preconditioning;
    text("precond-verdict", pre ? pre.outcome : null);
    list("precond-reasons", reasons(pre));
    text("last-seen", s.last_t_ms === undefined || s.last_t_ms === null ? null :
      "boot " + s.last_epoch + ", t=" + (s.last_t_ms / 1000).toFixed(0) + " s" +
      (s.last_seen ? ", received " + new Date(s.last_seen * 1000).toLocaleTimeString() : ""));
    const link = s.link || {};
    text("registration", link.state || link.registration);
    text("plmn", link.plmn ? link.plmn + (link.operator ? " (" + link.operator + ")" : "") : null);
    text("roaming", link.roaming === undefined ? null : yesNo(link.roaming, "roaming", "home network"));
    text("roaming-bytes", link.roaming_bytes);
    text("service-state", s.service ? (s.service.active ? "active" : "stopped") : (v.data_available ? null : "no active service: no data (FAQ 10)"));
    list("services", v.services.length ? v.services : ["none: the module transmits nothing"]);
    const canLock = v.services.includes("remote_lock") && !v.removed;
    $("lock-btn").disabled = !canLock;
    $("unlock-btn").disabled = !canLock;
    const body = $("commands").tBodies[0];
    body.replaceChildren(...commands.map((c) => {
      const tr = document.createElement("tr");
      const outcome = c.outcomes.map((o) => o.outcome + (o.reason ? " (" + o.reason + ")" : "")).join(", ") || "sent";
      const result = c.result ? "; " + c.result.status + (c.result.reasons.length ? " (" + c.result.reasons.join(", ") + ")" : "") : "";
      for (const t of [c.name + (c.argument ? " " + c.argument : ""), c.user, outcome + result]) {
        const td = document.createElement("td"); td.textContent = t; tr.append(td);
      }
      return tr;
    }));
  }

  async function command(name) {
    const vin = $("vehicle").dataset.vin;
    text("command-outcome", name + ": sending…");
    try {
      const c = await api("POST", "/api/vehicles/" + vin + "/commands", { name });
      text("command-outcome", name + ": sent (" + c.command_id + ")");
    } catch (e) {
      text("command-outcome", name + " refused: " + e.message);
    }
  }

  // --- wiring --------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", async () => {
    $("login-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      text("login-error", "");
      try {
        me = await api("POST", "/api/login", { email: $("login-email").value, password: $("login-password").value });
        $("who-name").textContent = me.user.email + " (" + me.user.role.replace("_", " ") + ", " + me.user.account + ")";
        route();
      } catch (e) { $("login-error").textContent = e.message; }
    });
    $("logout").addEventListener("click", async () => {
      try { await api("POST", "/api/logout"); } finally { me = null; location.hash = "#/"; route(); }
    });
    $("add-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      text("add-error", "");
      try { await api("POST", "/api/vehicles", { vin: $("add-vin").value.trim() }); $("add-vin").value = ""; }
      catch (e) { $("add-error").textContent = e.message; $("add-error").dataset.code = e.code; }
    });
    $("lock-btn").addEventListener("click", () => command("lock"));
    $("unlock-btn").addEventListener("click", () => command("unlock"));
    window.addEventListener("hashchange", route);
    try {
      me = await api("GET", "/api/me");
      $("who-name").textContent = me.user.email + " (" + me.user.role.replace("_", " ") + ", " + me.user.account + ")";
    } catch (e) { me = null; }
    route();
  });
})();
