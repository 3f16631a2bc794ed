"""The explorers' web views on the built site, in headless Chromium.

Every page whose notebook calls ``steplab.explore.NAME_web()`` is opened over http and from
``file://``. For each chart on it: it renders; every control (range slider, radio buttons,
checkbox, dropdown), moved the way a reader moves it (its value set, ``input`` and ``change``
dispatched), changes the drawn canvas, and the row the chart then draws is the one of the new
setting; the embedded row of a setting equals a fresh call of the explorer's compute
function; the page's chart data stays near a megabyte; nothing is requested from another host.
"""

from __future__ import annotations

import json
import re
import urllib.parse

import numpy as np
import pytest

from conftest import HTML_DIR, ROOT
from steplab import explore
from test_site import DOCNAMES, PageVisit, browser_context, server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.site

_CALL = re.compile(r"steplab\.explore\.(\w+)_web\(")
MAX_PAGE_BYTES = 1_100_000  # "about 1 MB" of chart data per page


def explorer_pages() -> dict[str, list[str]]:
    """docname -> the explorers its notebook shows as web views, from the notebooks' sources."""
    pages = {}
    for doc in DOCNAMES:
        path = ROOT / f"{doc}.ipynb"
        if not path.exists():
            continue
        nb = json.loads(path.read_text(encoding="utf-8"))
        names = [m for c in nb["cells"] if c["cell_type"] == "code" for m in _CALL.findall("".join(c["source"]))]
        if names:
            pages[doc] = names
    return pages


PAGES = explorer_pages()


# ----------------------------------------------------------------- fresh values from Python


def _fresh(name: str, setting: dict) -> dict:
    """What the chart must draw for ``setting``, computed here from the explorer's own function."""
    if name == "step_size":
        r = explore.step_size_run(**setting)
        return {"x": r["trajectory"][:, 0], "y": r["trajectory"][:, 1], "loss": r["loss"]}
    if name == "momentum":
        r = explore.momentum_run(**setting)
        return {"x": r["trajectory"][:, 0], "y": r["trajectory"][:, 1], "loss": r["loss"]}
    if name == "batch_size":
        r = explore.batch_size_run(**setting)
        return {"fx": r["trajectories"][:, -1, 0], "fy": r["trajectories"][:, -1, 1],
                ("td", "dist"): r["distance2"].mean(axis=0), ("tv", "noise"): r["noise"]}
    if name == "schedule":
        r = explore.schedule_run(**setting)
        return {("t", "lr"): r["lr"], ("ts", "sub"): r["suboptimality"].mean(axis=0),
                ("tc", "const"): r["constant_suboptimality"].mean(axis=0)}
    if name.startswith("adam_"):
        r = explore.adam_run(problem=name[len("adam_"):], **setting)
        out = {("t", "x"): r["trajectory"][:, 0]}
        if "average_regret" in r:
            out[("tr", "regret")] = np.concatenate([[np.nan], r["average_regret"]])  # tr counts rounds from 1
        else:
            out[("t", "loss")] = r["loss"]
        return out
    raise AssertionError(f"no reference computation for the {name!r} web view")


def _assert_row_is(name: str, row: dict, setting: dict) -> None:
    for key, expected in _fresh(name, setting).items():
        if isinstance(key, tuple):  # a thinned curve: compare at the steps the row keeps
            steps, key = key
            expected = np.asarray(expected)[np.asarray(row[steps])]
        got = np.array([np.nan if v is None else v for v in row[key]], dtype=np.float64)
        expected = np.asarray(expected, dtype=np.float64)
        assert got.shape == expected.shape, f"{name} {setting}: {key} has {got.size} values, expected {expected.size}"
        ok = np.isfinite(expected)
        assert np.array_equal(np.isfinite(got), ok), f"{name} {setting}: {key} differs in its non-finite values"
        # The page keeps 4 or 5 significant digits.
        np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-3, atol=0.0, err_msg=f"{name} {setting}: {key}")


# ----------------------------------------------------------------- the page, driven

_VIEWS_JS = """() => [...document.querySelectorAll('.steplab-web-view')].map(el => {
    const spec = JSON.parse(document.getElementById(el.id + '-spec').textContent);
    return {id: el.id, explorer: el.dataset.explorer, rendered: el.dataset.rendered === 'true',
            canvas: !!el.querySelector('canvas'), meta: spec.usermeta.steplab,
            params: spec.params.map(p => ({name: p.name, value: p.value, bind: p.bind}))};
})"""

# The settings of the rows the chart draws now: every derived dataset whose rows carry the
# sliders' values (the embedded source of all rows excepted), reduced to distinct settings.
_SHOWN_JS = """([id, sliders, sources]) => {
    const view = document.getElementById(id).vegaView;
    const names = Object.keys(view.getState({data: () => true, signals: () => false}).data || {});
    const seen = new Map();
    for (const name of names) {
        if (sources.includes(name)) continue;
        let rows;
        try { rows = view.data(name); } catch (e) { continue; }
        if (!Array.isArray(rows) || !rows.length || !rows.every(r => sliders.every(s => s in r))) continue;
        for (const r of rows) {
            const setting = Object.fromEntries(sliders.map(s => [s, r[s]]));
            seen.set(JSON.stringify(setting), setting);
        }
    }
    return [...seen.values()];
}"""

# Move one control to another of its values as a reader does; resolve when redrawn.
_MOVE_JS = """async ([id, name, index]) => {
    const el = document.getElementById(id);
    const view = el.vegaView;
    const before = el.querySelector('canvas').toDataURL();
    const inputs = [...el.querySelectorAll(`[name="${name}"]`)];
    const input = inputs[0];
    if (input.type === 'radio') { inputs[index].checked = true; inputs[index].dispatchEvent(new Event('change')); }
    else if (input.type === 'checkbox') { input.checked = !input.checked; input.dispatchEvent(new Event('change')); }
    else if (input.tagName === 'SELECT') { input.selectedIndex = index; input.dispatchEvent(new Event('change')); }
    else { input.value = String(index); input.dispatchEvent(new Event('input')); }
    await view.runAsync();
    await new Promise(r => requestAnimationFrame(() => r()));
    return {changed: el.querySelector('canvas').toDataURL() !== before, value: view.signal(name)};
}"""


def _other_value(param):
    """A value of the control other than its current one, and what to set on the input for it."""
    bind, value = param["bind"], param["value"]
    if bind["input"] == "range":
        target = bind["min"] if value != bind["min"] else bind["max"]
        return target, target
    if bind["input"] == "checkbox":
        return (not value), None
    options = bind["options"]
    index = 0 if options[0] != value else len(options) - 1
    return options[index], index


def _spec(page, view_id):
    return page.evaluate(f"() => JSON.parse(document.getElementById('{view_id}-spec').textContent)")


def _check_views(visit, docname):
    page = visit.page
    expected = PAGES[docname]
    try:
        page.wait_for_function(
            "n => document.querySelectorAll('.steplab-web-view[data-rendered=\"true\"]').length >= n",
            arg=len(expected), timeout=30_000,
        )
    except Exception:
        errors = page.evaluate("() => [...document.querySelectorAll('.steplab-web-view')].map(e => e.textContent)")
        pytest.fail(f"{docname}: web views not drawn: {errors}")
    views = page.evaluate(_VIEWS_JS)
    names = [v["explorer"] for v in views]
    for name in expected:
        assert name in names or any(n.startswith(name + "_") for n in names), f"{docname}: no {name} web view in {names}"
    for v in views:
        assert v["rendered"] and v["canvas"], f"{docname}: {v['explorer']} has no chart"
    return views


@pytest.mark.parametrize("docname", sorted(PAGES) or [pytest.param("none", marks=pytest.mark.skip("no web view in the book yet"))])
def test_web_views_draw_move_and_hold_the_computed_data(docname, server, browser_context):  # noqa: F811
    visit = PageVisit(browser_context, server, docname)
    page = visit.page
    try:
        views = _check_views(visit, docname)
        total = 0
        for v in views:
            name, sliders = v["explorer"], v["meta"]["sliders"]
            spec = _spec(page, v["id"])
            rows = spec["datasets"][v["meta"]["dataset"]]
            total += len(json.dumps(spec, separators=(",", ":")))
            params = {p["name"]: p for p in v["params"]}
            setting = {s: params[s]["value"] for s in sliders}
            # The chart starts on the row of the initial setting, which is the computed one.
            sources = list(spec["datasets"])
            shown = page.evaluate(_SHOWN_JS, [v["id"], sliders, sources])
            assert shown == [setting], f"{name}: draws {shown}, expected {setting}"
            row = next(r for r in rows if all(r[s] == setting[s] for s in sliders))
            _assert_row_is(name, row, setting)
            # Sliders first, then the choices: a choice such as the schedule's shape can make
            # another control irrelevant (a constant step has no warmup).
            for s in sorted(sliders, key=lambda name: params[name]["bind"]["input"] != "range"):
                target, index = _other_value(params[s])
                moved = page.evaluate(_MOVE_JS, [v["id"], s, target if params[s]["bind"]["input"] == "range" else index])
                assert moved["value"] == target, f"{name}: {s} went to {moved['value']}, expected {target}"
                assert moved["changed"], f"{name}: moving {s} to {target} did not change the chart"
                setting[s] = target
                shown = page.evaluate(_SHOWN_JS, [v["id"], sliders, sources])
                assert shown == [setting], f"{name}: after {s}, draws {shown}, expected {setting}"
            # The last setting reached, every control moved: its row is the computed one too.
            row = next(r for r in rows if all(r[s] == setting[s] for s in sliders))
            _assert_row_is(name, row, setting)
        assert total <= MAX_PAGE_BYTES, f"{docname}: {total} bytes of chart data"
        outside = [u for u in visit.requests if not visit.is_local(u)]
        assert not outside, f"{docname} requested {outside}"
        assert not visit.failed, f"{docname}: failed to load {visit.failed}"
    finally:
        visit.close()


@pytest.mark.parametrize("docname", sorted(PAGES) or [pytest.param("none", marks=pytest.mark.skip("no web view in the book yet"))])
def test_web_views_work_from_file_urls(docname, built_book, browser_context):
    url = (HTML_DIR / f"{docname}.html").as_uri()
    visit = PageVisit(browser_context, url.rsplit("/", 1)[0] + "/", urllib.parse.quote(docname.rsplit("/", 1)[-1]))
    try:
        assert visit.page.url.startswith("file://")
        views = _check_views(visit, docname)
        v = views[0]
        p = v["params"][0]
        target, index = _other_value(p)
        moved = visit.page.evaluate(_MOVE_JS, [v["id"], p["name"], target if p["bind"]["input"] == "range" else index])
        assert moved["changed"]
        scripts = visit.page.evaluate("() => [...document.scripts].map(s => s.src).filter(s => /vega/.test(s))")
        assert sorted(u.split("?")[0].rsplit("/", 1)[-1] for u in scripts) == ["vega-embed.min.js", "vega-lite.min.js", "vega.min.js"]
        assert all(u.startswith("file://") for u in scripts)
        outside = [u for u in visit.requests if not visit.is_local(u)]
        assert not outside, f"{docname} requested {outside}"
    finally:
        visit.close()


def test_only_pages_with_a_view_load_vega_and_no_page_apologises_for_a_static_grid(built_book):
    assert PAGES, "no lesson shows a web view"
    for doc in DOCNAMES:
        text = (built_book["html"] / f"{doc}.html").read_text(encoding="utf-8")
        loads = "vega.min.js" in text
        assert loads == (doc in PAGES), f"{doc}.html: loads Vega {loads}, holds a view {doc in PAGES}"
        if loads:
            assert text.count("vega-embed.min.js") == 1, f"{doc}.html loads vega-embed more than once"
        assert "this is a static grid" not in text, f"{doc}.html still describes a static grid"


# The accessible name of an element, as far as the page states it (aria-labelledby, aria-label,
# a wrapping <label>), and each control's focus ring once the keyboard has put focus on it.
_NAMES_JS = """id => {
    const el = document.getElementById(id);
    const text = e => (e ? e.textContent.replace(/\\s+/g, ' ').trim() : '');
    const named = e => e.getAttribute('aria-labelledby')
        ? e.getAttribute('aria-labelledby').split(' ').map(i => text(document.getElementById(i))).join(' ').trim()
        : (e.getAttribute('aria-label') || text(e.closest('label')));
    return {
        chart: named(el),
        controls: [...el.querySelectorAll('.vega-bindings input, .vega-bindings select')].map(named),
        groups: [...el.querySelectorAll('.vega-bind')].filter(b => b.querySelector('input[type=radio]'))
                  .map(b => b.getAttribute('role') === 'radiogroup' ? named(b) : ''),
    };
}"""
_RING_JS = """() => {
    const e = document.activeElement, s = getComputedStyle(e);
    return {name: e.name, visible: e.matches(':focus-visible'), style: s.outlineStyle, width: parseFloat(s.outlineWidth)};
}"""
# The key that moves a control away from its current value.
_KEY_JS = """([id, name]) => {
    const inputs = [...document.getElementById(id).querySelectorAll(`[name="${name}"]`)];
    const i = inputs[0];
    if (i.type === 'range') return Number(i.value) < Number(i.max) ? 'ArrowRight' : 'ArrowLeft';
    if (i.type === 'checkbox') return ' ';
    if (i.tagName === 'SELECT') return i.selectedIndex < i.options.length - 1 ? 'ArrowDown' : 'ArrowUp';
    return 'ArrowRight';
}"""


@pytest.mark.parametrize("docname", sorted(PAGES) or [pytest.param("none", marks=pytest.mark.skip("no web view in the book yet"))])
def test_web_views_are_named_and_move_from_the_keyboard(docname, server, browser_context):  # noqa: F811
    """Each chart and control has a name; Tab reaches each control with a visible focus ring and
    its key (an arrow, space) moves the chart's parameter."""
    visit = PageVisit(browser_context, server, docname)
    page = visit.page
    try:
        for v in _check_views(visit, docname):
            names = page.evaluate(_NAMES_JS, v["id"])
            assert names["chart"].startswith("Interactive chart: "), f"{v['explorer']}: chart named {names['chart']!r}"
            assert all(names["controls"]), f"{v['explorer']}: controls without a name: {names['controls']}"
            assert all(names["groups"]), f"{v['explorer']}: a row of radio buttons is not a named group: {names['groups']}"
            for p in v["params"]:
                control = page.locator(f'#{v["id"]} [name="{p["name"]}"]').first
                # Reach the control from the keyboard (back one stop and forward again), as a reader does.
                control.focus()
                page.keyboard.press("Shift+Tab")
                page.keyboard.press("Tab")
                ring = page.evaluate(_RING_JS)
                assert ring["name"] == p["name"], f"{v['explorer']}: Tab went to {ring['name']!r}, not {p['name']!r}"
                assert ring["visible"] and ring["style"] != "none" and ring["width"] >= 2, f"{v['explorer']}: {p['name']} focus not visible: {ring}"
                before = page.evaluate("([id, n]) => document.getElementById(id).vegaView.signal(n)", [v["id"], p["name"]])
                page.keyboard.press(page.evaluate(_KEY_JS, [v["id"], p["name"]]))
                page.evaluate("async id => { await document.getElementById(id).vegaView.runAsync(); }", v["id"])
                after = page.evaluate("([id, n]) => document.getElementById(id).vegaView.signal(n)", [v["id"], p["name"]])
                assert after != before, f"{v['explorer']}: the keyboard did not move {p['name']} (still {before!r})"
    finally:
        visit.close()
