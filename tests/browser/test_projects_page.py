"""The Projects page in a real browser: the home page leads to it, a member sees their
project and its members' standing, the project's owner sets a member's role with the form
(the API decides and the page shows the new standing), a refusal is shown in the API's words,
and someone in no project is told their workspaces are personal."""

from __future__ import annotations

from playwright.sync_api import expect

PROJECT = "page-lab"
OWNER, MEMBER, NEWBIE, LONER = "pgowner", "pgmember", "pgnewbie", "pgloner"


def _project(hub) -> None:
    for name in (OWNER, MEMBER, NEWBIE, LONER):
        hub.ensure_user(name)
    r = hub.api("POST", "/bench/projects", {"name": PROJECT, "owner": OWNER})
    assert r.status_code in (201, 409), r.text
    r = hub.api("PUT", f"/bench/projects/{PROJECT}/members/{MEMBER}", {"role": "contributor"})
    assert r.ok, r.text
    hub.api("DELETE", f"/bench/projects/{PROJECT}/members/{NEWBIE}")


def test_the_owner_sets_a_members_role_on_the_projects_page(hub, page, log_in):
    _project(hub)
    log_in(OWNER)
    page.locator("nav.navbar").get_by_role("link", name="Projects").click()
    page.wait_for_url(f"{hub.url}/hub/projects")
    section = page.locator(f"section[data-project='{PROJECT}']")
    expect(section.locator("h2")).to_have_text(PROJECT)
    expect(section.locator(f"tr[data-user='{MEMBER}'] td.role")).to_have_text("contributor")

    form = section.locator("form.member-form")
    form.locator("input[name=user]").fill(NEWBIE)
    form.locator("select[name=role]").select_option("administrator")
    form.locator("input[name=upload]").check()
    form.get_by_role("button", name="Set member").click()
    expect(section.locator(f"tr[data-user='{NEWBIE}'] td.role")).to_have_text("administrator")
    members = {m["user"]: m for m in hub.api("GET", f"/bench/projects/{PROJECT}").json()["members"]}
    assert members[NEWBIE]["role"] == "administrator" and members[NEWBIE]["upload"] is True

    section.locator(f"button.remove-member[data-user='{NEWBIE}']").click()
    expect(section.locator(f"tr[data-user='{NEWBIE}']")).to_have_count(0)


def test_a_contributor_sees_the_members_but_no_forms_and_a_loner_is_told_they_have_none(
    hub, page, log_in
):
    _project(hub)
    log_in(MEMBER)
    page.goto(f"{hub.url}/hub/projects")
    section = page.locator(f"section[data-project='{PROJECT}']")
    expect(section.locator(f"tr[data-user='{OWNER}']")).to_contain_text("(owner)")
    expect(section.locator("form.member-form")).to_have_count(0)
    expect(section.locator("button.remove-member")).to_have_count(0)

    page.goto(f"{hub.url}/hub/logout")
    log_in(LONER)
    page.goto(f"{hub.url}/hub/projects")
    expect(page.locator("#no-projects")).to_contain_text("You are in no project")
    expect(page.locator("section.project")).to_have_count(0)


def test_a_refused_change_on_the_page_shows_the_apis_reason(hub, page, log_in):
    _project(hub)
    log_in(OWNER)
    page.goto(f"{hub.url}/hub/projects")
    section = page.locator(f"section[data-project='{PROJECT}']")
    form = section.locator("form.member-form")
    form.locator("input[name=user]").fill(OWNER)  # the owner's standing is not for changing
    form.get_by_role("button", name="Set member").click()
    expect(section.locator(".project-message")).to_contain_text(f"{OWNER} owns project")
