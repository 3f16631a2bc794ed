"""steplab.explore.web: the rows of a web view are the compute function's results, grid by grid."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from steplab import explore
from steplab.explore import web
from steplab.explore.web import EMBED_ENV, Slider, web_view


def _close(embedded, fresh, digits=5):
    """Embedded numbers keep ``digits`` significant digits; non-finite ones are null."""
    fresh = np.asarray(fresh, dtype=np.float64)
    assert len(embedded) == fresh.size
    got = np.array([np.nan if v is None else v for v in embedded], dtype=np.float64)
    assert np.array_equal(np.isfinite(got), np.isfinite(fresh))
    ok = np.isfinite(fresh)
    np.testing.assert_allclose(got[ok], fresh[ok], rtol=0.6 * 10.0 ** (1 - digits), atol=0.0)


def _toy(calls=None):
    def compute(a, b, mode):
        if calls is not None:
            calls.append((a, b, mode))
        t = np.arange(5)
        return {"curve": a * t + (b if mode == "plus" else -b), "tag": f"{a}-{b}-{mode}"}

    grid = [Slider("a", (0.5, 1.0, 1.5)), Slider("b", (1, 2)), Slider("mode", ("plus", "minus"))]

    def layout(base):
        return base.transform_flatten(["curve"]).mark_line().encode(y="curve:Q")

    return web_view(compute, grid, layout, lambda r: {"curve": r["curve"], "tag": r["tag"]}, name="toy")


# ----------------------------------------------------------------- the grid


def test_rows_follow_the_grid_in_product_order_and_match_compute():
    view = _toy()
    assert view.shape == (3, 2, 2)
    assert len(view.rows) == 12
    settings = list(view.settings())
    assert settings[0] == {"a": 0.5, "b": 1, "mode": "plus"}
    assert settings[-1] == {"a": 1.5, "b": 2, "mode": "minus"}
    for row, setting in zip(view.rows, settings):
        assert {k: row[k] for k in setting} == setting
    # A setting away from the corners: a wrong index into the rows picks another curve.
    row = view.data_for(a=1.0, b=2, mode="minus")
    assert row["tag"] == "1.0-2-minus"
    assert row["curve"] == [-2.0, -1.0, 0.0, 1.0, 2.0]


def test_nothing_is_computed_until_the_rows_are_needed(monkeypatch):
    calls = []
    view = _toy(calls)
    monkeypatch.delenv(EMBED_ENV, raising=False)
    bundle = view._repr_mimebundle_()
    assert set(bundle) == {"text/plain"} and "appears on the website" in bundle["text/plain"]
    assert "3 a × 2 b × 2 mode" in bundle["text/plain"]
    assert calls == []
    monkeypatch.setenv(EMBED_ENV, "embed")
    bundle = view._repr_mimebundle_()
    assert "text/html" in bundle
    assert len(calls) == 12


def test_numbers_keep_their_digits_and_non_finite_values_become_null():
    assert web._round(np.array([1.23456789, np.inf, np.nan, -2e-300]), 4) == [1.235, None, None, -2e-300]
    assert web._round(np.float64(np.pi), 3) == 3.14
    assert web._round(np.arange(3), 3) == [0, 1, 2]
    assert web._round("converges", 3) == "converges" and web._round(None, 3) is None


def test_html_is_the_spec_and_one_embed_call():
    view = _toy()
    page = view.html()
    assert page.count("vegaEmbed(") == 1
    assert "<script src" not in page and "vega.min.js" not in page
    ident = re.search(r'<div class="steplab-web-view" id="([^"]+)" data-explorer="toy">', page).group(1)
    spec_text = re.search(rf'<script type="application/json" id="{ident}-spec">(.*?)</script>', page, re.S).group(1)
    spec = json.loads(spec_text)
    assert spec == json.loads(json.dumps(view.spec))
    assert spec["datasets"]["toy_runs"] == view.rows
    assert spec["$schema"].endswith("/v6.4.1.json")
    assert [p["name"] for p in spec["params"]] == ["a", "b", "mode"]
    assert "3 a × 2 b × 2 mode values" in page


def test_script_end_tags_inside_the_data_are_escaped():
    view = web_view(lambda a: {"s": "</script><b>"}, [Slider("a", (1, 2))], lambda base: base.mark_point(),
                    lambda r: {"s": r["s"]}, name="escape")
    page = view.html()
    assert page.count("</script>") == 2  # the JSON block's and the embed call's own
    spec_text = re.search(r'type="application/json" id="[^"]+">(.*?)</script>', page, re.S).group(1)
    assert json.loads(spec_text)["datasets"]["escape_runs"][0]["s"] == "</script><b>"


def test_controls_bind_to_parameters_of_the_right_kind():
    view = _toy()
    params = {p["name"]: p for p in view.spec["params"]}
    assert params["a"]["bind"]["input"] == "range"
    assert params["a"]["bind"]["step"] == pytest.approx(0.5)
    assert params["b"]["bind"]["input"] == "radio"  # two numbers: not a slider
    assert params["mode"]["bind"]["input"] == "select"
    assert params["mode"]["bind"]["options"] == ["plus", "minus"]
    assert Slider("flag", (False, True)).kind == "checkbox"
    # A range slider's value may carry rounding error (0.30000000000000004): match within half a step.
    test = Slider("eta", (0.1, 0.2, 0.3)).test()
    assert test.startswith('abs(datum["eta"] - eta) < ')
    assert float(test.rsplit("<", 1)[1]) == pytest.approx(0.05)
    assert Slider("B", (1, 2, 4)).test() == 'datum["B"] == B'


# ----------------------------------------------------------------- clear errors


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="eta", values=(0.1,)), "at least two"),
        (dict(name="eta", values=(0.1, 0.1, 0.2)), "repeats"),
        (dict(name="eta", values=(0.1, 0.2, 0.4), kind="range"), "evenly spaced"),
        (dict(name="eta", values=(0.1, float("nan"))), "finite"),
        (dict(name="eta", values=(0.1, "fast")), "one kind"),
        (dict(name="eta", values=(0.1, 0.2), initial=0.3), "initial value of 'eta'"),
        (dict(name="2eta", values=(0.1, 0.2)), "identifier"),
        (dict(name="eta", values=(0.1, 0.2), kind="knob"), "kind for 'eta'"),
        (dict(name="eta", values=(0.1, 0.2), labels=("a",)), "one entry per value"),
    ],
)
def test_bad_sliders_say_what_is_wrong(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Slider(**kwargs)


def test_bad_grids_and_settings_say_what_is_wrong():
    layout, columns = (lambda base: base.mark_point()), (lambda r: r)
    with pytest.raises(ValueError, match="non-empty list of Slider"):
        web_view(lambda: {}, [], layout, columns, name="x")
    with pytest.raises(ValueError, match="non-empty list of Slider"):
        web_view(lambda a: {}, [("a", (1, 2))], layout, columns, name="x")
    with pytest.raises(ValueError, match="each slider once"):
        web_view(lambda a: {}, [Slider("a", (1, 2)), Slider("a", (3, 4))], layout, columns, name="x")
    view = _toy()
    with pytest.raises(ValueError, match="one of its grid values"):
        view.data_for(a=0.75, b=1, mode="plus")
    with pytest.raises(ValueError, match="exactly the sliders"):
        view.data_for(a=0.5, b=1)
    clash = web_view(lambda a: {"a": 1}, [Slider("a", (1, 2))], layout, lambda r: r, name="clash")
    with pytest.raises(ValueError, match="reuse slider names"):
        clash.rows


def test_a_grid_too_large_for_the_page_is_refused():
    view = web_view(lambda a: {"v": np.linspace(0, 1, 2000) * a}, [Slider("a", tuple(range(1, 11)))],
                    lambda base: base.mark_point(), lambda r: r, name="big", max_bytes=50_000)
    with pytest.raises(ValueError, match="over max_bytes=50000"):
        view.spec


def test_ellipse_contours_lie_on_their_level_sets():
    H = np.array([[2.0, 0.5], [0.5, 1.0]])
    center = np.array([1.0, -1.0])
    for row in web.ellipse_contours(H, center, levels=(0.1, 1.0)):
        e = np.column_stack([row["x"], row["y"]]) - center
        values = 0.5 * np.einsum("ni,ij,nj->n", e, H, e)
        np.testing.assert_allclose(values, row["level"], rtol=1e-2)
    with pytest.raises(ValueError, match="positive definite"):
        web.ellipse_contours(np.diag([1.0, -1.0]), levels=(1.0,))


def test_thin_keeps_both_ends_and_at_most_the_points_asked():
    for n, m in [(101, 51), (600, 121), (7, 10), (1000, 61)]:
        idx = web.thin(n, m)
        assert idx[0] == 0 and idx[-1] == n - 1 and idx.size <= m
        assert np.all(np.diff(idx) > 0)


# ----------------------------------------------------------------- the explorers' views, on small grids


def test_step_size_web_rows_are_step_size_run():
    view = explore.step_size_web(eta=(0.5, 1.9, 2.1), kappa=(3.0, 10.0))
    assert view.shape == (3, 2)
    for eta, kappa in [(1.9, 10.0), (2.1, 3.0)]:
        row, fresh = view.data_for(eta=eta, kappa=kappa), explore.step_size_run(eta=eta, kappa=kappa)
        _close(row["loss"], fresh["loss"])
        _close(row["x"], fresh["trajectory"][:, 0])
        _close(row["y"], fresh["trajectory"][:, 1])
        assert row["rate"] == pytest.approx(fresh["rate_theory"], rel=1e-5)
    assert view.data_for(eta=2.1, kappa=3.0)["note"].startswith("diverged at step")


def test_momentum_web_rows_are_momentum_run():
    view = explore.momentum_web(eta=(1.0, 2.75), beta=(0.0, 0.45, 0.9))
    row, fresh = view.data_for(eta=2.75, beta=0.45), explore.momentum_run(eta=2.75, beta=0.45)
    _close(row["loss"], fresh["loss"], digits=4)
    _close(row["x"], fresh["trajectory"][:, 0], digits=4)
    gd = [d for d in view.spec["datasets"].values() if d and "gd" in d[0]][0]
    gd_row = next(d for d in gd if d["eta"] == 2.75)
    _close(gd_row["gd"], fresh["gd_loss"], digits=4)


def test_batch_size_web_rows_are_batch_size_run():
    view = explore.batch_size_web(eta=(0.3, 1.2), batch_size=(1, 16))
    row, fresh = view.data_for(eta=0.3, batch_size=16), explore.batch_size_run(eta=0.3, batch_size=16)
    _close(row["dist"], fresh["distance2"].mean(axis=0)[row["td"]], digits=4)
    _close(row["noise"], fresh["noise"][row["tv"]], digits=4)
    _close(row["fx"], fresh["trajectories"][:, -1, 0], digits=4)
    assert row["td"][0] == 0 and row["td"][-1] == fresh.settings["steps"]
    assert view.data_for(eta=1.2, batch_size=1)["note"].startswith("diverged at step")


def test_schedule_web_rows_are_schedule_run():
    view = explore.schedule_web(kind=("constant", "wsd"), peak_lr=(0.1, 0.3), warmup_steps=(0, 20), steps=(100, 300))
    row = view.data_for(kind="wsd", peak_lr=0.3, warmup_steps=20, steps=300)
    fresh = explore.schedule_run(kind="wsd", peak_lr=0.3, warmup_steps=20, steps=300)
    _close(row["lr"], fresh["lr"][row["t"]], digits=4)
    _close(row["sub"], fresh["suboptimality"].mean(axis=0)[row["ts"]], digits=4)
    _close(row["const"], fresh["constant_suboptimality"].mean(axis=0)[row["tc"]], digits=4)


def test_adam_web_rows_are_adam_run_for_each_problem():
    both = explore.adam_web()
    assert [v.name for v in both.views] == ["adam_badly_scaled", "adam_reddi"]
    reddi = both.views[1]
    row = reddi.data_for(eta=0.5, beta1=0.0, beta2=0.1, bias_correction=True, amsgrad=True)
    fresh = explore.adam_run(problem="reddi", eta=0.5, beta1=0.0, beta2=0.1, amsgrad=True)
    _close(row["x"], fresh["trajectory"][row["t"], 0], digits=4)
    _close(row["regret"], fresh["average_regret"][np.asarray(row["tr"]) - 1], digits=4)


def test_settings_that_same_as_merges_are_computed_once_and_keep_their_own_slider_values():
    calls = []

    def compute(kind, warmup):
        calls.append((kind, warmup))
        return {"v": np.array([1.0, 2.0]) * (warmup + (10 if kind == "warm" else 0))}

    grid = [Slider("kind", ("flat", "warm")), Slider("warmup", (0, 5, 10))]
    view = web_view(compute, grid, lambda base: base.mark_point(), lambda r: r, name="merge",
                    same_as=lambda s: {**s, "warmup": 0} if s["kind"] == "flat" else s)
    rows = view.rows
    assert sorted(calls) == [("flat", 0), ("warm", 0), ("warm", 5), ("warm", 10)]
    assert view.data_for(kind="flat", warmup=10) == {"kind": "flat", "warmup": 10, "v": [0.0, 0.0]}
    assert view.data_for(kind="warm", warmup=5)["v"] == [15.0, 30.0]
    assert len(rows) == 6
