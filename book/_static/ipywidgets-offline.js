/* Glue between the vendored ipywidgets embedder (vendor/html-manager-1.0.15/embed-amd.js) and this book.
 * Loaded after RequireJS and before the embedder, only on pages with widgets (nb_ipywidgets_js in _config.yml).
 *
 * 1. The embedder fetches the Font Awesome 5 fonts of its CSS from the folder of the RequireJS module
 *    "@jupyter-widgets/html-manager/dist/libembed-amd", by default <page folder>/@jupyter-widgets/...;
 *    map that module path onto the vendored folder, which holds the fonts.
 * 2. The widgets typeset their labels with the MathJax 2 call MathJax.Hub.Queue, while the book loads
 *    MathJax 3: provide that call on top of MathJax 3's typesetPromise.
 * 3. Accessible names for what the widgets render: a slider handle is named after its widget's label, an
 *    image drawn by a widget's output gets an alternative text (the widgets write neither).
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (window.require && window.require.config && script && script.src) {
    window.require.config({
      paths: {"@jupyter-widgets/html-manager/dist": new URL("vendor/html-manager-1.0.15", script.src).href}
    });
  }

  function typeset() {
    var mathjax = window.MathJax;
    var elements = [];
    for (var i = 0; i < arguments.length; i++) {
      var job = arguments[i];
      if (Array.isArray(job) && job[0] === "Typeset" && job[2]) {
        elements.push(job[2]);
      }
    }
    if (!elements.length || !mathjax.startup || !mathjax.typesetPromise) {
      return;
    }
    mathjax.startup.promise
      .then(function () { return mathjax.typesetPromise(elements); })
      .catch(function (err) { console.warn("MathJax could not typeset a widget label:", err); });
  }

  function installHub() {
    var mathjax = window.MathJax;
    if (mathjax && mathjax.version && mathjax.version.charAt(0) === "3" && !mathjax.Hub) {
      mathjax.Hub = {Queue: typeset};
    }
  }

  function nameWidgets(root) {
    var handles = root.querySelectorAll(".widget-subarea .noUi-handle:not([aria-label])");
    for (var i = 0; i < handles.length; i++) {
      var slider = handles[i].closest(".widget-slider, .widget-hslider, .widget-vslider, .widget-inline-hbox");
      var label = slider && slider.querySelector(".widget-label");
      var text = label && label.textContent.trim();
      handles[i].setAttribute("aria-label", text || "slider");
    }
    var images = root.querySelectorAll(".widget-subarea img:not([alt])");
    for (var j = 0; j < images.length; j++) {
      images[j].setAttribute("alt", "figure drawn by the interactive widget");
    }
  }

  function watchWidgets() {
    nameWidgets(document);
    if (window.MutationObserver) {
      new MutationObserver(function () { nameWidgets(document); })
        .observe(document.body, {childList: true, subtree: true});
    }
  }

  // MathJax 3 (a deferred script) replaces window.MathJax before DOMContentLoaded; the widgets render on load.
  document.addEventListener("DOMContentLoaded", installHub);
  document.addEventListener("DOMContentLoaded", watchWidgets);
  window.addEventListener("load", installHub);
})();
