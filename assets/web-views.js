/* Names for the explorers' web views (steplab.explore.web), once Vega-Embed has drawn them.
 *
 * Vega marks each chart's container as a visualization named "Vega visualization" and writes
 * each choice of values as a row of radio buttons named only by their values ("0.01", "0.1").
 * Here the chart is named after the section that holds it and its explorer, described by the note under
 * it (the grid its sliders move on), and each row of radio buttons becomes a radio group
 * named by its control's label ("η"). The controls are the browser's own inputs, so the
 * keyboard moves them (arrow keys, space); steplab.css makes their focus visible.
 */
(function () {
  "use strict";

  function sectionTitle(el) {
    var section = el.closest("section");
    var heading = section && section.querySelector("h1, h2, h3, h4");
    return heading ? heading.textContent.replace(/[#¶]\s*$/, "").trim() : "";
  }

  function label(view) {
    // Two charts can share a section: the explorer's name ("adam reddi") tells them apart.
    var title = sectionTitle(view), explorer = (view.dataset.explorer || "").replace(/_/g, " ");
    view.setAttribute("aria-label", "Interactive chart: " + [title, explorer].filter(Boolean).join(", "));
    var note = view.nextElementSibling;
    if (note && note.classList.contains("steplab-web-view-grid")) {
      note.id = note.id || view.id + "-grid";
      view.setAttribute("aria-describedby", note.id);
    }
    view.querySelectorAll(".vega-bind").forEach(function (bind, i) {
      var name = bind.querySelector(".vega-bind-name");
      if (!name || !bind.querySelector(".vega-bind-radio")) return;
      name.id = name.id || view.id + "-control-" + i;
      bind.setAttribute("role", "radiogroup");
      bind.setAttribute("aria-labelledby", name.id);
    });
  }

  function watch(view) {
    if (view.dataset.rendered === "true") { label(view); return; }
    var obs = new MutationObserver(function () {
      if (view.dataset.rendered === "true") { obs.disconnect(); label(view); }
    });
    obs.observe(view, { attributes: true, attributeFilter: ["data-rendered"] });
  }

  function start() { document.querySelectorAll(".steplab-web-view").forEach(watch); }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
