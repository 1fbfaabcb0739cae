// Portcullis' self-service page. Framework-free on purpose: one module, no build step, nothing from a
// CDN. It calls the API same-origin with the browser's Easy Auth session cookie (App Service
// Authentication in Azure, devhost's stand-in locally), so no token ever reaches this script.
// Everything the API says is put on the page with textContent, never as HTML.

const API = "/api";
const API_VERSION = "2020-01-01";
const POLL_MS = 1000;
// The API's rule for a break-glass request's reason (shared/approval.py MIN_BREAK_GLASS_REASON).
const MIN_BREAK_GLASS_REASON = 10;
const REFRESH_MS = 15000;

const state = {
  me: null,
  paths: new Set(),
  policies: [],
  vms: [], // {id, name, policyId, breakGlass, ports: [{number, protocol, sources, maxDuration}]}
  selected: null,
  mine: [], // your requests, newest first (GET /api/requests?requester=me: the newest page)
  mineOlder: [], // older pages, read on "Older requests" (the answers' nextLink)
  mineNext: null, // where the next older page starts, or null
  holders: [], // the grants open now that you may see (GET /api/grants?active=true), soonest end first
  holdersNext: null, // more of them ("Show more"), or null
  pollTimer: null,
};

// ---- small helpers ----

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function show(id, visible = true) {
  $(id).hidden = !visible;
}

class ApiError extends Error {
  constructor(status, code, message, target, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.target = target;
    this.details = details || [];
  }
  describe() {
    const field = this.target ? ` (field: ${this.target})` : "";
    const more = this.details.map((d) => `${d.target || ""}: ${d.message}`).join("; ");
    return `${this.message}${field}${more ? ` — ${more}` : ""} [HTTP ${this.status} ${this.code || ""}]`.trim();
  }
}

async function api(method, path, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path, options);
  } catch (error) {
    throw new ApiError(0, "NetworkError", `The app could not be reached: ${error.message}`);
  }
  const text = await response.text();
  let document = null;
  try {
    document = text ? JSON.parse(text) : null;
  } catch {
    document = null;
  }
  if (!response.ok) {
    const error = (document && document.error) || {};
    throw new ApiError(
      response.status,
      error.code || String(response.status),
      error.message || (typeof error === "string" ? error : text.slice(0, 300) || response.statusText),
      error.target,
      error.details,
    );
  }
  return document;
}

function notify(message, kind = "error") {
  const box = $("notice");
  box.textContent = message;
  box.className = kind;
  box.hidden = !message;
}

function vmName(id) {
  return id.split("/").pop();
}

function resourceGroupOf(id) {
  const parts = id.split("/");
  const index = parts.findIndex((p) => p.toLowerCase() === "resourcegroups");
  return index >= 0 ? parts[index + 1] : "";
}

// ISO 8601 durations as Defender writes them (PT3H, PT30M, P1D, PT1H30M) -> minutes.
export function durationMinutes(text) {
  const match = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/i.exec(text || "");
  if (!match) return 0;
  const [, d, h, m, s] = match.map((v) => Number(v || 0));
  return d * 1440 + h * 60 + m + Math.floor(s / 60);
}

function formatMinutes(minutes) {
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest ? `${hours} h ${rest} min` : `${hours} h`;
}

function timeLeft(endIso) {
  const seconds = Math.round((Date.parse(endIso) - Date.now()) / 1000);
  if (seconds <= 0) return "ended";
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h ? `${h} h ${m} min left` : m ? `${m} min ${s} s left` : `${s} s left`;
}

function localTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

// A request's approval state (`approval` on GET /api/requests/{id}) in words: who must approve, who
// decided and how, when it lapses, an extension that waits. Approvers are object ids (users or
// groups): the API has no directory to name them, so the ids are shown as they are.
export function approvalLines(approval) {
  if (!approval) return [];
  const lines = [];
  if (approval.breakGlass) {
    lines.push(approval.reviewRequired ? "Break-glass: opened without approval, waiting for an approver's review." : "Break-glass: opened without approval.");
  } else {
    const count = approval.required === 1 ? "1 approval" : `${approval.required} approvals`;
    const me = state.me?.objectId?.toLowerCase();
    const who = approval.approvers.map((id) => (id.toLowerCase() === me ? `you (${id})` : id));
    lines.push(`Approval ${approval.status.toLowerCase()}: needs ${count} from ${who.join(", ")}.`);
  }
  for (const d of approval.decisions || []) {
    const comment = d.comment ? `: "${d.comment}"` : "";
    lines.push(`${d.verdict} by ${d.displayName} at ${localTime(d.timeUtc)}${comment}`);
  }
  if (approval.review) {
    const comment = approval.review.comment ? `: "${approval.review.comment}"` : "";
    lines.push(`Reviewed by ${approval.review.displayName} at ${localTime(approval.review.timeUtc)}${comment}`);
  }
  if (approval.status === "Pending" && approval.pendingUntilUtc) {
    lines.push(`Undecided, it lapses at ${localTime(approval.pendingUntilUtc)}.`);
  }
  const ext = approval.extension;
  if (ext) {
    lines.push(`Extension to ${localTime(ext.endTimeUtc)}: ${ext.status}${ext.status === "Pending" ? `, lapses at ${localTime(ext.pendingUntilUtc)}` : ""}.`);
    for (const d of ext.decisions || []) {
      lines.push(`Extension ${d.verdict.toLowerCase()} by ${d.displayName}${d.comment ? `: "${d.comment}"` : ""}`);
    }
  }
  return lines;
}

// The note on a break-glass request's progress, "" for any other request.
export function breakGlassNote(approval) {
  if (!approval?.breakGlass) return "";
  const told = approval.approvers?.length ? ` Approvers told: ${approval.approvers.join(", ")}.` : "";
  return approval.reviewRequired
    ? `Emergency access (break-glass): opened without approval.${told} It awaits an approver's review.`
    : "Emergency access (break-glass): opened without approval; an approver has reviewed it.";
}

function approvalBlock(approval) {
  const lines = approvalLines(approval);
  if (!lines.length) return null;
  return el("ul", { class: "approval" }, ...lines.map((line) => el("li", { text: line })));
}

// The line a person pastes: ssh for 22, an .rdp file for 3389, host:port otherwise.
export function connectionLine(port, connection) {
  if (!connection) return null;
  if (port === 22) return connection.ssh.replace("<user>", sshUser() || "<user>");
  if (port === 3389) return connection.rdp;
  return `${connection.address}:${connection.port}`;
}

// The SSH user name is remembered on this device only (localStorage), never sent to the app.
const SSH_USER_KEY = "portcullis.sshUser";

function sshUser() {
  try {
    return localStorage.getItem(SSH_USER_KEY) || "";
  } catch {
    return "";
  }
}

function rememberSshUser(name) {
  try {
    if (name) localStorage.setItem(SSH_USER_KEY, name);
    else localStorage.removeItem(SSH_USER_KEY);
  } catch {
    // Storage may be off (private mode): the line keeps <user>.
  }
}

function rdpFile(connection) {
  return [
    `full address:s:${connection.address}:${connection.port}`,
    "prompt for credentials:i:1",
    "administrative session:i:1",
    "",
  ].join("\r\n");
}

function copyButton(text, label) {
  const button = el("button", { type: "button", class: "copy", "aria-label": `Copy ${label}`, text: "Copy" });
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select and copy";
    }
    button.dataset.copied = text;
    setTimeout(() => {
      button.textContent = "Copy";
    }, 2500);
  });
  return button;
}

function connectionBlock(port, connection, vm) {
  const line = connectionLine(port, connection);
  if (!line) return el("p", { class: "hint", text: "The address will show once the rule is open." });
  const block = el("div", { class: "connect" });
  block.append(el("code", { class: "line", "data-port": String(port), text: line }), copyButton(line, `the connection line for port ${port}`));
  if (port === 3389) {
    const url = URL.createObjectURL(new Blob([rdpFile(connection)], { type: "application/x-rdp" }));
    block.append(el("a", { class: "button", href: url, download: `${vmName(vm)}.rdp`, text: "Download .rdp" }));
  }
  return block;
}

// ---- start: who am I, what does the API offer ----

async function start() {
  // GET /api/me decides: 401 means no session (or it ended). Easy Auth's /.auth/me is not used, as
  // it needs the token store, which infra/ leaves off.
  try {
    state.me = await api("GET", "/me");
  } catch (error) {
    $("loading").hidden = true;
    if (error.status === 401) {
      show("view-signin");
      return;
    }
    notify(`The app could not tell who you are: ${error.describe()}`);
    return;
  }
  renderWho();
  try {
    const spec = await api("GET", "/openapi.json");
    for (const [path, item] of Object.entries(spec.paths || {})) {
      for (const method of Object.keys(item)) state.paths.add(`${method.toUpperCase()} ${path}`);
    }
  } catch {
    // Without the document, optional features stay off.
  }
  $("loading").hidden = true;
  show("tabs");
  $("tabs").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-view]");
    if (button) selectView(button.dataset.view);
  });
  $("tabs").querySelector('[data-view="approvals"]').hidden = !hasApprovals();
  $("tabs").querySelector('[data-view="admin"]').hidden = true;
  $("request-form").addEventListener("submit", submitRequest);
  $("mine-older").addEventListener("click", () => loadOlderMine().catch((error) => notify(`Older requests could not be read: ${error.describe()}`)));
  $("holders-more").addEventListener("click", () => loadMoreHolders().catch((error) => notify(`More holders could not be read: ${error.describe()}`)));
  $("break-glass").addEventListener("change", breakGlassChanged);
  $("request-cancel").addEventListener("click", () => {
    show("request-form", false);
    state.selected = null;
  });
  selectView("request");
  await loadPolicies();
  // The VMs and grants are read: say so (tests and assistive tools wait for it).
  document.body.dataset.ready = "true";
  setInterval(tick, 1000);
  setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  // An approver's inbox fills while the page is open: read it again while it is shown.
  setInterval(() => {
    if (!$("view-approvals").hidden) loadApprovals();
  }, REFRESH_MS);
}

function has(route) {
  return state.paths.has(route);
}

function hasApprovals() {
  return has("GET /requests") && has("POST /requests/{requestId}/approve") && has("POST /requests/{requestId}/deny");
}

function hasReview() {
  return has("POST /requests/{requestId}/review");
}

function hasExtend() {
  return has("POST /requests/{requestId}/extend");
}

function renderWho() {
  const who = $("who");
  who.replaceChildren(
    el("span", { class: "name", text: state.me.displayName }),
    " ",
    el("a", { href: "/.auth/logout?post_logout_redirect_uri=/api/ui/", text: "Sign out" }),
  );
}

function selectView(view) {
  for (const button of $("tabs").querySelectorAll("button[data-view]")) {
    button.setAttribute("aria-pressed", String(button.dataset.view === view));
  }
  for (const name of ["request", "mine", "approvals", "admin"]) show(`view-${name}`, name === view);
  // Read again, then drawn once (refreshMine draws the shown view): an approver's decision or an
  // extension may have changed it meanwhile, and drawing twice would move focus under the keyboard.
  if (view === "mine") refreshMine().catch(() => renderMine());
  if (view === "admin") loadAdmin();
  if (view === "approvals") loadApprovals();
}

// ---- requester: the VMs, the form, progress ----

async function loadPolicies() {
  if (!has("GET /policies")) {
    notify("This app has no GET /api/policies route: the page cannot find your VMs.");
    return;
  }
  try {
    state.policies = (await api("GET", "/policies")).value || [];
  } catch (error) {
    notify(`Your VMs could not be read: ${error.describe()}`);
    return;
  }
  state.vms = [];
  for (const policy of state.policies) {
    for (const vm of policy.properties?.virtualMachines || []) {
      state.vms.push({
        id: vm.id,
        name: vmName(vm.id),
        policyId: policy.id,
        // Offered in the form only where the policy allows it; the API decides on submit.
        breakGlass: Boolean(vm.portcullis?.approval?.breakGlass),
        ports: (vm.ports || []).map((p) => ({
          number: p.number,
          protocol: p.protocol,
          sources: p.allowedSourceAddressPrefixes || (p.allowedSourceAddressPrefix ? [p.allowedSourceAddressPrefix] : []),
          maxDuration: p.maxRequestAccessDuration,
        })),
      });
    }
  }
  renderVms();
  // Policies, holders and findings are for those who may read a policy.
  $("tabs").querySelector('[data-view="admin"]').hidden = state.policies.length === 0;
  await refreshMine().catch((error) => notify(`Your requests could not be read: ${error.describe()}`));
}

function renderVms() {
  const list = $("vms");
  list.replaceChildren();
  const empty = state.vms.length === 0;
  $("vms-empty").textContent = empty
    ? "You have no VMs to request: no just-in-time policy you may read lists a VM. Ask your Azure administrator " +
      "for the JIT requester role (…/jitNetworkAccessPolicies/read and …/initiate/action) on the VMs you need."
    : "";
  show("vms-empty", empty);
  for (const vm of state.vms) {
    const ports = el("ul", { class: "ports" });
    for (const port of vm.ports) {
      ports.append(
        el("li", {
          text: `${port.number}/${port.protocol || "*"} · from ${port.sources.join(", ") || "—"} · at most ${formatMinutes(durationMinutes(port.maxDuration))}`,
        }),
      );
    }
    list.append(
      el(
        "li",
        { class: "card vm", "data-vm": vm.id },
        el("h3", { text: vm.name }),
        el("p", { class: "hint", text: `resource group ${resourceGroupOf(vm.id)}` }),
        ports,
        el("button", { type: "button", class: "primary", text: "Request access", "aria-label": `Request access to ${vm.name}`, onclick: () => openForm(vm) }),
      ),
    );
  }
}

function openForm(vm) {
  state.selected = vm;
  $("request-title").textContent = `Request access to ${vm.name}`;
  const ports = $("ports");
  ports.replaceChildren();
  vm.ports.forEach((port, index) => {
    const id = `port-${port.number}`;
    const box = el("input", { type: "checkbox", id, name: "port", value: String(port.number), checked: index === 0 || port.number === 22 });
    ports.append(el("div", { class: "check" }, box, el("label", { for: id, text: `${port.number} (${portName(port.number)})` })));
  });
  fillDurations(vm);
  $("ssh-user").value = sshUser();
  const source = $("source");
  source.value = state.me.sourceAddress || "";
  $("source-hint").textContent = state.me.sourceAddress
    ? `Your address as the app sees it: ${state.me.sourceAddress}`
    : "The app cannot see your address: enter it.";
  for (const id of ["ports-error", "duration-error", "source-error", "justification-error", "ssh-user-error", "break-glass-error"]) {
    show(id, false);
  }
  show("break-glass-field", vm.breakGlass);
  $("break-glass").checked = false;
  breakGlassChanged();
  show("progress", false);
  show("request-form");
  $("request-form").scrollIntoView({ block: "start" });
  ports.querySelector("input")?.focus();
}

function portName(number) {
  return { 22: "SSH", 3389: "RDP", 5985: "WinRM", 5986: "WinRM over HTTPS" }[number] || "TCP";
}

function fillDurations(vm) {
  const max = Math.min(...vm.ports.map((p) => durationMinutes(p.maxDuration) || 180));
  const choices = [15, 30, 60, 120, 180, 240, 480, 720, 1440].filter((m) => m <= max);
  if (!choices.includes(max)) choices.push(max);
  const select = $("duration");
  select.replaceChildren(...choices.map((m) => el("option", { value: String(m), text: formatMinutes(m) })));
  select.value = String(choices.includes(60) ? 60 : choices[choices.length - 1]);
}

// Break-glass asks for the reason: "Why" is marked required and the button says what it does.
function breakGlassChanged() {
  const on = $("break-glass").checked;
  show("justification-required", on);
  $("justification").required = on;
  $("justification").setAttribute("aria-required", String(on));
  $("request-submit").textContent = on ? "Open now (break-glass)" : "Request access";
  $("request-submit").classList.toggle("danger", on);
  if (!on) fieldError("break-glass-error", "");
}

function fieldError(id, message) {
  const node = $(id);
  node.textContent = message;
  node.hidden = !message;
}

// An API error names its field (`error.target`): show it beside that input.
function showApiError(error) {
  const target = (error.target || "").toLowerCase();
  const where = target.includes("breakglass")
    ? "break-glass-error"
    : target.includes("source")
      ? "source-error"
      : target.includes("endtime") || target.includes("duration")
        ? "duration-error"
        : target.includes("justification")
          ? "justification-error"
          : target.includes("port") || target.includes("number")
            ? "ports-error"
            : null;
  if (where) fieldError(where, error.describe());
  notify(`The request was refused: ${error.describe()}`);
}

async function submitRequest(event) {
  event.preventDefault();
  notify("");
  const vm = state.selected;
  const numbers = [...$("ports").querySelectorAll("input:checked")].map((box) => Number(box.value));
  fieldError("ports-error", numbers.length ? "" : "Pick at least one port.");
  const source = $("source").value.trim();
  fieldError("source-error", source ? "" : "Enter the address you connect from.");
  if (!numbers.length || !source) return;
  const end = new Date(Date.now() + Number($("duration").value) * 60000).toISOString();
  const user = $("ssh-user").value.trim();
  if (user && !/^[A-Za-z0-9._-]{1,64}$/.test(user)) {
    fieldError("ssh-user-error", "Letters, digits, dot, dash and underscore only.");
    return;
  }
  fieldError("ssh-user-error", "");
  rememberSshUser(user);
  const ticket = $("ticket").value.trim();
  const why = $("justification").value.trim();
  // Break-glass needs the reason (the ticket id alone is not one): said here, before the API would.
  const breakGlass = !$("break-glass-field").hidden && $("break-glass").checked;
  if (breakGlass && why.length < MIN_BREAK_GLASS_REASON) {
    fieldError("justification-error", `Break-glass needs the reason: at least ${MIN_BREAK_GLASS_REASON} characters.`);
    $("justification").focus();
    return;
  }
  fieldError("justification-error", "");
  // The HTTP initiate has no ticket field (that is the queue channel's): the ticket leads the
  // justification, so it is in the audit trail and on the request.
  const justification = [ticket ? `[${ticket}]` : "", why].filter(Boolean).join(" ") || undefined;
  const body = {
    virtualMachines: [
      { id: vm.id, ports: numbers.map((number) => ({ number, endTimeUtc: end, allowedSourceAddressPrefix: source })) },
    ],
    justification,
    breakGlass: breakGlass || undefined,
  };
  const button = $("request-submit");
  button.disabled = true;
  try {
    const answer = await api("POST", `${vm.policyId}/initiate?api-version=${API_VERSION}`, body);
    show("request-form", false);
    // The next request starts from a clean form: a reason or ticket is for one request only.
    $("justification").value = "";
    $("ticket").value = "";
    $("break-glass").checked = false;
    breakGlassChanged();
    follow(answer.requestId, vm.id);
  } catch (error) {
    showApiError(error);
  } finally {
    button.disabled = false;
  }
}

function follow(requestId, vmId) {
  clearTimeout(state.pollTimer);
  show("progress");
  $("progress-status").textContent = "Opening…";
  $("progress").dataset.request = requestId;
  const poll = async () => {
    let request;
    try {
      request = await api("GET", `/requests/${requestId}`);
    } catch (error) {
      $("progress-status").textContent = `Could not read the request: ${error.describe()}`;
      state.pollTimer = setTimeout(poll, POLL_MS * 3);
      return;
    }
    const ports = request.virtualMachines.flatMap((vm) => vm.ports.map((port) => ({ vm: vm.id, port })));
    const open = ports.every(({ port }) => port.status === "Initiated" && port.connection);
    const pending = ports.some(({ port }) => port.status === "Pending");
    const over = ports.every(({ port }) => !["Initiating", "Initiated", "Pending"].includes(port.status));
    const ended = [...new Set(ports.map(({ port }) => (port.status === "Revoked" ? port.statusReason : port.status)))];
    $("progress-status").textContent = open
      ? `Open until ${localTime(ports[0].port.endTimeUtc)}.`
      : pending
        ? "Waiting for approval: it opens once the approvers agree."
        : over
          ? `Closed: ${ended.join(", ")}.`
          : "Opening… rules are being written to the network.";
    // Break-glass: a note of its own (opened without approval, approvers told, awaiting review); the
    // approval block keeps what follows it (the review, an extension) without repeating it.
    const note = breakGlassNote(request.approval);
    $("progress-break-glass").textContent = note;
    show("progress-break-glass", Boolean(note));
    $("progress").dataset.breakGlass = !request.approval?.breakGlass ? "" : request.approval.reviewRequired ? "awaiting-review" : "reviewed";
    const lines = approvalLines(request.approval).slice(note ? 1 : 0);
    $("progress-approval").replaceChildren(...(lines.length ? [el("ul", { class: "approval" }, ...lines.map((line) => el("li", { text: line })))] : []));
    $("progress").dataset.state = open ? "open" : pending ? "pending" : over ? "closed" : "opening";
    const list = $("progress-ports");
    list.replaceChildren(
      ...ports.map(({ vm, port }) =>
        el(
          "li",
          { class: `port ${port.status.toLowerCase()}` },
          el("span", { class: "status", text: `${vmName(vm)} port ${port.number}: ${port.status}` }),
          port.status === "Initiated" ? connectionBlock(port.number, port.connection, vm) : null,
        ),
      ),
    );
    if (open) $("progress-status").focus();
    if (!open && !over) state.pollTimer = setTimeout(poll, pending ? POLL_MS * 3 : POLL_MS);
    else refreshMine().catch(() => {});
  };
  poll();
  void vmId;
}

// ---- my requests (and who holds access, for policy readers) ----

// What the shown views need, read again: my requests in one call, whatever the number of VMs; who
// holds access (one call across every VM, for policy readers) only while that view is shown.
async function refresh() {
  const reads = [];
  if (!$("view-mine").hidden) reads.push(refreshMine());
  if (!$("view-admin").hidden) reads.push(refreshHolders());
  await Promise.all(reads);
}

// A nextLink ("/api/...", relative as Location is) as the path api() takes.
export function apiPath(link) {
  return link.startsWith(`${API}/`) ? link.slice(API.length) : link;
}

// Your requests on every VM, newest first: the newest page (50) of GET /api/requests?requester=me,
// each the record GET /api/requests/{id} answers. Older pages, once read ("Older requests"), are kept
// below it across refreshes; the newest page is what changes.
async function refreshMine() {
  const page = await api("GET", "/requests?requester=me");
  state.mine = page.value || [];
  if (state.mineOlder.length === 0) state.mineNext = page.nextLink || null;
  if (!$("view-mine").hidden) renderMine();
}

async function loadOlderMine() {
  if (!state.mineNext) return;
  const page = await api("GET", apiPath(state.mineNext));
  state.mineOlder.push(...(page.value || []));
  state.mineNext = page.nextLink || null;
  renderMine();
}

// Who holds access now, on every VM: one call (GET /api/grants?active=true, the grants open now that
// you may see), then more pages only on "Show more".
async function refreshHolders() {
  const page = await api("GET", "/grants?active=true");
  state.holders = page.value || [];
  state.holdersNext = page.nextLink || null;
  if (!$("view-admin").hidden) renderHolders();
}

async function loadMoreHolders() {
  if (!state.holdersNext) return;
  const page = await api("GET", apiPath(state.holdersNext));
  const seen = new Set(state.holders.map((g) => g.grantId));
  state.holders.push(...(page.value || []).filter((g) => !seen.has(g.grantId)));
  state.holdersNext = page.nextLink || null;
  renderHolders();
}

// A request record's ports, each with its VM; `open` ones are Initiating or Initiated before their end.
export function requestPorts(request, now = Date.now()) {
  const ports = (request.virtualMachines || []).flatMap((vm) => vm.ports.map((port) => ({ vm: vm.id, port })));
  const open = ports.filter(({ port }) => ["Initiating", "Initiated"].includes(port.status) && Date.parse(port.endTimeUtc) > now);
  const pending = ports.filter(({ port }) => port.status === "Pending");
  return { ports, open, pending };
}

function renderMine() {
  const list = $("mine");
  const newest = new Set(state.mine.map((request) => request.requestId));
  const requests = [...state.mine, ...state.mineOlder.filter((request) => !newest.has(request.requestId))];
  show("mine-empty", requests.length === 0);
  show("mine-older", Boolean(state.mineNext));
  list.replaceChildren(
    ...requests.map((request) => {
      const requestId = request.requestId;
      const { ports, open, pending } = requestPorts(request);
      const active = open.length > 0;
      const waiting = !active && pending.length > 0;
      const shown = active ? open : ports;
      const first = shown[0]?.port || {};
      const vms = [...new Set(shown.map(({ vm }) => vmName(vm)))];
      const numbers = [...new Set(shown.map(({ port }) => port.number))];
      const where = active ? "Open" : waiting ? "Waiting for approval" : first.status === "Revoked" ? first.statusReason : first.status;
      const sources = [...new Set(shown.flatMap(({ port }) => port.allowedSourceAddressPrefixes || [port.allowedSourceAddressPrefix]).filter(Boolean))];
      const card = el("li", { class: `card request ${active ? "active" : waiting ? "pending" : "past"}`, "data-request": requestId });
      card.append(
        el("h3", { text: `${vms.join(", ")} · ${numbers.join(", ")}` }),
        el("p", {
          class: "hint status",
          text: `${where} · from ${sources.join(", ") || "—"} · started ${localTime(request.startTimeUtc)}`,
        }),
      );
      if (request.approval?.breakGlass) card.append(approvalBlock(request.approval));
      if (waiting) {
        card.append(
          el("p", { class: "actions" }, el("button", { type: "button", class: "danger", text: "Withdraw", "aria-label": `Withdraw request ${requestId}`, onclick: () => revoke(requestId) })),
        );
      }
      if (active) {
        card.append(el("p", { class: "left", "data-end": first.endTimeUtc, text: timeLeft(first.endTimeUtc) }));
        for (const { vm, port } of open.filter(({ port }) => port.connection)) {
          card.append(connectionBlock(port.number, port.connection, vm));
        }
        const actions = el("p", { class: "actions" });
        actions.append(el("button", { type: "button", class: "danger", text: "Revoke", "aria-label": `Revoke request ${requestId}`, onclick: () => revoke(requestId) }));
        if (hasExtend()) actions.append(el("button", { type: "button", text: "Extend 1 h", "aria-label": `Extend request ${requestId} by an hour`, onclick: () => extend(requestId, open.map(({ port }) => port)) }));
        card.append(actions);
      }
      return card;
    }),
  );
}

async function revoke(requestId) {
  notify("");
  try {
    await api("DELETE", `/requests/${requestId}`);
    notify("Revoked: the rules are being removed.", "ok");
    if ($("progress").dataset.request === requestId) follow(requestId);
  } catch (error) {
    notify(`Revoke failed: ${error.describe()}`);
  }
  await refreshMine().catch(() => {});
}

// One more hour from the current end. The API keeps the rules in place (the successor grant is
// written before the old one ends); on a VM that needs approval the extension waits for it and the
// old end holds meanwhile. A refusal (beyond the policy's maximum, say) names its field.
async function extend(requestId, ports) {
  notify("");
  const end = new Date(Math.max(...ports.map((p) => Date.parse(p.endTimeUtc))) + 3600000).toISOString();
  try {
    const answer = await api("POST", `/requests/${requestId}/extend`, { endTimeUtc: end });
    const waiting = answer?.approval?.extension?.status === "Pending";
    notify(waiting ? `Extension to ${localTime(end)} asked: it waits for approval.` : `Extended to ${localTime(end)}.`, "ok");
  } catch (error) {
    notify(`Extend failed: ${error.describe()}`);
  }
  await refreshMine().catch(() => {});
}

function tick() {
  for (const node of document.querySelectorAll("[data-end]")) node.textContent = timeLeft(node.dataset.end);
}

// ---- approvals (only when the app has the routes) ----

async function loadApprovals() {
  if (!hasApprovals()) return;
  let pending = [];
  let reviews = [];
  try {
    [pending, reviews] = await Promise.all([
      api("GET", "/requests?status=Pending&approver=me").then((list) => list.value || []),
      hasReview() ? api("GET", "/requests?status=ReviewRequired&approver=me").then((list) => list.value || []) : [],
    ]);
  } catch (error) {
    notify(`The approvals could not be read: ${error.describe()}`);
  }
  show("approvals-empty", pending.length === 0 && reviews.length === 0);
  $("approvals").replaceChildren(...pending.map(inboxCard), ...reviews.map(reviewCard));
}

// A break-glass request (opened without approval) waiting for the signed-in approver's review: what
// was opened and why, and Review with an optional comment (POST /api/requests/{id}/review). Once
// reviewed it leaves the inbox; a refusal is shown on the card.
function reviewCard(request) {
  const id = request.requestId;
  const commentId = `review-comment-${id}`;
  const comment = el("input", { id: commentId, class: "comment", maxlength: "500", autocomplete: "off" });
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const review = async (event) => {
    const button = event.target;
    button.disabled = true;
    error.hidden = true;
    try {
      await api("POST", `/requests/${id}/review`, { comment: comment.value.trim() || undefined });
      notify(`Request ${id} reviewed.`, "ok");
      await loadApprovals();
    } catch (apiError) {
      error.textContent = `Could not review: ${apiError.describe()}`;
      error.hidden = false;
      button.disabled = false;
    }
  };
  const what = (request.virtualMachines || []).map((vm) => `${vmName(vm.id)} ${vm.ports.map((p) => p.number).join(",")}`);
  return el(
    "li",
    { class: "card review-request", "data-request": id },
    el("h3", { text: `Break-glass, awaiting review · ${request.requestor}: ${what.join("; ")}` }),
    el("p", { class: "why", text: request.justification ? `Why: ${request.justification}` : "No reason given." }),
    el("p", { class: "hint", text: `Opened without approval at ${localTime(request.startTimeUtc)}` }),
    approvalBlock(request.approval),
    el("label", { for: commentId, text: "Comment (optional)" }),
    comment,
    el(
      "p",
      { class: "actions" },
      el("button", { type: "button", class: "primary", text: "Review", "aria-label": `Mark break-glass request ${id} from ${request.requestor} reviewed`, onclick: review }),
    ),
    error,
  );
}

// One request (or extension) waiting for the signed-in approver: who asks, for what, why, until
// when it waits, and Approve / Deny with an optional comment. The decision's answer or refusal is
// shown, then the inbox is read again (the request leaves it once decided).
function inboxCard(request) {
  const id = request.requestId;
  const approval = request.approval || {};
  const extension = approval.status !== "Pending" && approval.extension?.status === "Pending" ? approval.extension : null;
  const commentId = `comment-${id}`;
  const comment = el("input", { id: commentId, class: "comment", maxlength: "500", autocomplete: "off" });
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const decide = (verb) => async (event) => {
    const buttons = event.target.closest(".actions").querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    error.hidden = true;
    try {
      await api("POST", `/requests/${id}/${verb}`, { comment: comment.value.trim() || undefined });
      notify(`Request ${id} ${verb === "approve" ? "approved" : "denied"}.`, "ok");
      await loadApprovals();
    } catch (apiError) {
      error.textContent = `Could not ${verb}: ${apiError.describe()}`;
      error.hidden = false;
      buttons.forEach((b) => (b.disabled = false));
    }
  };
  const what = (request.virtualMachines || []).map(
    (vm) => `${vmName(vm.id)} ${vm.ports.map((p) => p.number).join(",")} from ${[...new Set(vm.ports.map((p) => p.allowedSourceAddressPrefix || (p.allowedSourceAddressPrefixes || []).join(", ")))].join(", ")}`,
  );
  const minutes = Math.round(
    (Math.max(...(request.virtualMachines || []).flatMap((vm) => vm.ports.map((p) => Date.parse(p.endTimeUtc)))) - Date.parse(request.startTimeUtc)) / 60000,
  );
  const asks = extension
    ? `Extension to ${localTime(extension.endTimeUtc)}, lapses at ${localTime(extension.pendingUntilUtc)}`
    : `For ${Number.isFinite(minutes) && minutes > 0 ? formatMinutes(minutes) : "the requested time"} from approval`;
  return el(
    "li",
    { class: "card approval-request", "data-request": id },
    el("h3", { text: `${request.requestor}: ${what.join("; ")}` }),
    el("p", { class: "why", text: request.justification ? `Why: ${request.justification}` : "No reason given." }),
    el("p", { class: "hint", text: asks }),
    approvalBlock(approval),
    el("label", { for: commentId, text: "Comment (optional)" }),
    comment,
    el(
      "p",
      { class: "actions" },
      el("button", { type: "button", class: "primary", text: "Approve", "aria-label": `Approve request ${id} from ${request.requestor}`, onclick: decide("approve") }),
      el("button", { type: "button", class: "danger", text: "Deny", "aria-label": `Deny request ${id} from ${request.requestor}`, onclick: decide("deny") }),
    ),
    error,
  );
}

// ---- administrator: policies (read, edit), who holds access, compliance ----

async function loadAdmin() {
  renderPolicies();
  renderHolders();
  refreshHolders().catch(() => {});
  try {
    const findings = (await api("GET", "/compliance")).value || [];
    show("findings-empty", findings.length === 0);
    $("findings").replaceChildren(
      ...findings.map((f) =>
        el("li", { class: "card finding" }, el("h3", { text: `${f.kind}: ${f.ruleName}` }), el("p", { text: f.detail }), el("p", { class: "hint", text: `${vmName(f.targetId)} · port ${f.port} · since ${localTime(f.firstSeen)}` })),
      ),
    );
  } catch (error) {
    notify(`Compliance findings could not be read: ${error.describe()}`);
  }
}

function renderPolicies() {
  show("policies-empty", state.policies.length === 0);
  $("policies").replaceChildren(
    ...state.policies.map((policy) => {
      const card = el("li", { class: "card policy" });
      const rows = (policy.properties?.virtualMachines || []).map((vm) =>
        el("li", { text: `${vmName(vm.id)}: ${(vm.ports || []).map((p) => `${p.number} (≤ ${formatMinutes(durationMinutes(p.maxRequestAccessDuration))}, from ${p.allowedSourceAddressPrefix || (p.allowedSourceAddressPrefixes || []).join(", ")})`).join("; ")}` }),
      );
      const editor = el("textarea", { class: "json", rows: "14", spellcheck: "false", "aria-label": `Policy ${policy.name} as JSON`, hidden: true });
      const error = el("p", { class: "error", role: "alert", hidden: true });
      const save = el("button", { type: "button", class: "primary", text: "Save", hidden: true });
      const edit = el("button", { type: "button", text: "Edit" });
      edit.addEventListener("click", () => {
        editor.value = JSON.stringify({ kind: policy.kind, properties: { virtualMachines: policy.properties.virtualMachines } }, null, 2);
        editor.hidden = save.hidden = false;
        editor.focus();
      });
      save.addEventListener("click", async () => {
        error.hidden = true;
        let body;
        try {
          body = JSON.parse(editor.value);
        } catch (parseError) {
          error.textContent = `Not valid JSON: ${parseError.message}`;
          error.hidden = false;
          return;
        }
        try {
          await api("PUT", `${policy.id}?api-version=${API_VERSION}`, body);
          notify(`Policy ${policy.name} saved.`, "ok");
          editor.hidden = save.hidden = true;
          await loadPolicies();
          renderPolicies();
        } catch (apiError) {
          error.textContent = apiError.describe();
          error.hidden = false;
        }
      });
      card.append(
        el("h3", { text: `${resourceGroupOf(policy.id)} / ${policy.name}` }),
        el("p", { class: "hint", text: `${policy.location || ""} · ${policy.properties?.provisioningState || ""}` }),
        el("ul", { class: "ports" }, ...rows),
        el("p", { class: "actions" }, edit, save),
        editor,
        error,
      );
      return card;
    }),
  );
}

function renderHolders() {
  const rows = state.holders
    .filter((grant) => grant.active)
    .map((g) =>
      el(
        "tr",
        { "data-grant": g.grantId },
        el("td", { text: vmName(g.vmId) }),
        el("td", { text: String(g.port) }),
        el("td", { text: g.requestor.name }),
        el("td", { text: g.sourceAddressPrefixes.join(", ") }),
        el("td", { text: localTime(g.endTimeUtc) }),
        el("td", { text: g.status }),
      ),
    );
  $("holders").querySelector("tbody").replaceChildren(...rows);
  show("holders", rows.length > 0);
  show("holders-empty", rows.length === 0 && !state.holdersNext);
  show("holders-more", Boolean(state.holdersNext));
}

start();
