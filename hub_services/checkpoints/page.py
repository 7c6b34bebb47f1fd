"""The checkpoints page (the hub's Services menu): a user's workspaces and their checkpoints.

A pure function of what the API returns, so it is tested without a hub. All user-written text
(workspace and checkpoint names, reasons, error messages) is HTML-escaped; the actions call the
service's API with the page's XSRF token (HubOAuth checks it for cookie-authenticated posts).
"""

from __future__ import annotations

import html
import json

from jupyterhub.utils import url_path_join

__all__ = ["human_bytes", "render_page"]

_SCRIPT = """
<script>
const bench = JSON.parse(document.getElementById("bench-data").textContent);
async function call(method, url, body) {
  const resp = await fetch(url, {method, headers: {"X-XSRFToken": bench.xsrf,
    "Content-Type": "application/json"}, body: body && JSON.stringify(body)});
  const data = await resp.json();
  if (!resp.ok) { alert(data.message); return null; }
  return data;
}
document.querySelectorAll("button[data-action]").forEach((button) => {
  button.addEventListener("click", async () => {
    const d = button.dataset, url = bench.api + encodeURIComponent(d.user) + "/" +
      encodeURIComponent(d.workspace) + "/checkpoints";
    let done = null;
    if (d.action === "rename") {
      const name = prompt("New name for checkpoint " + d.id + " (spaces become _):", d.name);
      if (name) done = await call("PATCH", url + "/" + d.id, {name});
    } else if (d.action === "verify") {
      done = await call("POST", url + "/" + d.id + "/verify");
      if (done) alert(done.ok ? "Every chunk is intact." : done.problem);
      return;
    } else if (d.action === "new") {
      const name = prompt("Name of the new workspace started from " + d.id + ":");
      if (name) done = await call("POST", url + "/" + d.id + "/start-as-new", {name});
    } else if (d.action === "next") {
      done = await call("POST", url + "/" + d.id + "/restore-at-next-start");
      if (done) alert("The next start of " + d.workspace + " restores " + d.id + ".");
    } else if (d.action === "take") {
      const name = prompt("Name for the checkpoint (empty: an automatic one):");
      if (name !== null) done = await call("POST", url, name ? {name} : {});
    }
    if (done) location.reload();
  });
});
</script>
"""


def human_bytes(count: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; None -> ``"—"``."""
    if count is None:
        return "—"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # unreachable


def _button(action: str, text: str, user: str, workspace: str, checkpoint: dict | None) -> str:
    data = {"action": action, "user": user, "workspace": workspace}
    if checkpoint:
        data.update(id=checkpoint["id"], name=checkpoint["name"] or "")
    attrs = " ".join(f'data-{k}="{html.escape(str(v))}"' for k, v in data.items())
    return f'<button type="button" class="btn btn-xs btn-secondary" {attrs}>{text}</button>'


def _row(user: str, ws: dict, c: dict) -> str:
    e = html.escape
    lineage = ""
    if c["origin"]:
        lineage = f"from {e(c['origin']['workspace'])} / {e(c['origin']['checkpoint'])}"
    elif c["parent"]:
        lineage = f"after {e(c['parent'])}"
    actions = [_button("rename", "rename", user, ws["workspace"], c),
               _button("verify", "verify", user, ws["workspace"], c),
               _button("new", "start as new", user, ws["workspace"], c)]  # fmt: skip
    if not ws["running"]:
        actions.append(_button("next", "restore at next start", user, ws["workspace"], c))
    current = " <span class='badge bg-info'>current</span>" if c["current"] else ""
    return (
        f"<tr><td>{e(c['name'] or '')}{current}<br><code>{e(c['id'])}</code></td>"
        f"<td>{e(c['created'][:19].replace('T', ' '))}</td><td>{e(c['kind'])}"
        f"{' (' + e(c['reason']) + ')' if c['reason'] else ''}</td>"
        f"<td>{human_bytes(c['size_bytes'])} in {c['files']} files</td>"
        f"<td>{human_bytes(c['stored_bytes'])} (+{human_bytes(c['new_stored_bytes'])})</td>"
        f"<td>{lineage}</td><td>{' '.join(actions)}</td></tr>"
    )


def _workspace(user: str, ws: dict) -> str:
    e = html.escape
    notes = []
    if ws.get("periodic_error"):
        error = ws["periodic_error"]
        notes.append(f"<p class='alert alert-danger'>Last periodic checkpoint failed at "
                     f"{e(error['at'][:19])}: {e(error['message'])}</p>")  # fmt: skip
    if ws.get("unsaved"):
        notes.append(f"<p class='alert alert-warning'>{e(ws['unsaved']['message'])}; the "
                     "stopped container is kept and the next start saves it.</p>")  # fmt: skip
    if ws.get("origin"):
        origin = ws["origin"]
        notes.append(f"<p>Started as new from {e(origin['workspace'])}, checkpoint "
                     f"<code>{e(origin['checkpoint'])}</code>.</p>")  # fmt: skip
    rows = "".join(_row(user, ws, c) for c in ws["checkpoints"])
    take = _button("take", "checkpoint now", user, ws["workspace"], None) if ws["running"] else ""
    return (
        f"<h2>{e(ws['workspace'])} <small>{'running' if ws['running'] else 'stopped'}</small> "
        f"{take}</h2>{''.join(notes)}"
        "<table class='table table-sm'><tr><th>Name / id</th><th>Created (UTC)</th><th>Kind</th>"
        "<th>Size</th><th>Stored (new)</th><th>Lineage</th><th>Actions</th></tr>"
        + (rows or "<tr><td colspan=7>No checkpoint yet: one is taken at every stop.</td></tr>")
        + "</table>"
    )


def render_page(user: str, workspaces: list[dict], prefix: str, xsrf: bytes | str) -> str:
    """The whole page for ``user``'s ``workspaces`` (each as ``CheckpointService.list``
    returns it)."""
    data = {"api": url_path_join(prefix, "api/workspaces/"),
            "xsrf": xsrf.decode() if isinstance(xsrf, bytes) else xsrf}  # fmt: skip
    body = "".join(_workspace(user, ws) for ws in workspaces) or (
        "<p>No workspace has checkpoints yet: one is taken every time a workspace stops.</p>"
    )
    script_data = json.dumps(data).replace("<", "\\u003c")
    return (
        "<!doctype html><title>Workspace checkpoints</title>"
        '<link rel="stylesheet" href="/hub/static/css/style.min.css">'
        f"<div class='container'><h1>Checkpoints of {html.escape(user)}'s workspaces</h1>"
        "<p>A checkpoint holds what a workspace changed in its container (installed packages, "
        "files in the home directory, settings; not <code>/data</code>). One is taken every "
        "5 minutes while it runs and at every stop; a start restores the latest. Start any "
        "checkpoint as a new workspace; name one to keep it for good.</p>"
        f"{body}</div>"
        f'<script type="application/json" id="bench-data">{script_data}</script>{_SCRIPT}'
    )
