
document.addEventListener("DOMContentLoaded", function () {
  var cells = document.querySelectorAll("details.hide.above-input");
  var article = document.querySelector("article.bd-article");
  if (!cells.length || !article) return;
  var button = document.createElement("button");
  button.type = "button";
  button.className = "hamviz-code-toggle";
  var shown = false;
  function label() { button.textContent = shown ? "Hide all code" : "Show all code"; }
  label();
  button.addEventListener("click", function () {
    shown = !shown;
    cells.forEach(function (d) { d.open = shown; });
    label();
  });
  var title = article.querySelector("h1");
  if (title && title.parentNode) title.parentNode.insertBefore(button, title.nextSibling);
  else article.insertBefore(button, article.firstChild);
});

// Nothing wider than the text column: a figure drawn wider than its column is redrawn at the column's width
// (image grids keep their aspect), a title longer than its figure wraps, and a table wider than the column
// scrolls sideways with its first column frozen and a hint above it. Again whenever the window changes size.
(function () {
  function available(div) {  // from the figure's left edge to its column's right edge
    var box = div.closest("figure") || div.parentElement, style = getComputedStyle(box);
    return Math.floor(box.getBoundingClientRect().right - parseFloat(style.paddingRight || 0)
                      - div.getBoundingClientRect().left) - 1;
  }
  function wrapTitle(text, chars) {
    var words = text.replace(/<br\s*\/?>/gi, " ").split(/\s+/), lines = [], line = "";
    words.forEach(function (w) {
      if (line && (line + " " + w).replace(/<[^>]+>/g, "").length > chars) { lines.push(line); line = w; }
      else line = line ? line + " " + w : w;
    });
    if (line) lines.push(line);
    return lines;
  }
  function titleText(t) { return typeof t === "string" ? t : ((t || {}).text || ""); }
  function fitFigure(div) {
    if (!window.Plotly || !div._fullLayout || div._hamvizBusy) return;
    var L = div._fullLayout, m = L.margin;
    if (!div._hamviz) {
      var t0 = titleText(div.layout && div.layout.title);
      div._hamviz = {w: div.layout && div.layout.width, h: L.height, top: m.t, title: t0,
                     lines: t0 ? t0.split(/<br\s*\/?>/i).length : 0,
                     size: (L.title && L.title.font && L.title.font.size) || 17};
    }
    var d = div._hamviz, width = available(div), update = {};
    if (!(width > 50)) return;
    // the target, from the figure as drawn first: its width, its title's lines, its height
    var w = d.w ? Math.min(d.w, width) : L.width, lines = d.title ? d.title.split(/<br\s*\/?>/i) : [];
    if (d.title) {
      var chars = Math.max(20, Math.floor((0.93 * w - 20) / (0.56 * d.size)));
      var longest = Math.max.apply(null, lines.map(function (l) { return l.replace(/<[^>]+>/g, "").length; }));
      if (longest > chars) lines = wrapTitle(d.title, chars);
    }
    var title = lines.join("<br>"), top = d.top + 20 * Math.max(0, lines.length - d.lines);
    var images = (div.data || []).some(function (t) { return t.type === "image"; });
    var h = (d.w && images ? Math.round(d.top + m.b + (d.h - d.top - m.b) * (w - m.l - m.r) / (d.w - m.l - m.r))
                           : d.h) + (top - d.top);
    if (d.w && Math.abs(L.width - w) > 1) update.width = w;
    if (Math.abs(L.height - h) > 1) update.height = h;
    if (d.title && title !== titleText(div.layout.title)) { update["title.text"] = title; update["margin.t"] = top; }
    if (Object.keys(update).length) {
      div._hamvizBusy = true;
      // the boxes plotly sized for the figure grow with it (its div, and the wrapper its HTML output sets a height on)
      if (update.height) [div, div.parentElement].forEach(function (e) {
        if (e === div || (e.style.height && !e.matches("figure"))) e.style.height = update.height + "px";
      });
      if (update.width) div.style.width = update.width + "px";
      Plotly.relayout(div, update).then(function () { div._hamvizBusy = false; },
                                        function () { div._hamvizBusy = false; });
    }
  }
  function markTables() {
    document.querySelectorAll(".hamviz-scroll").forEach(function (box) {
      var over = box.scrollWidth > box.clientWidth + 1;
      box.classList.toggle("overflows", over);
      var hint = box.previousElementSibling;
      if (hint && hint.classList.contains("hamviz-scroll-hint")) hint.hidden = !over;
    });
  }
  function fitAll() {
    document.querySelectorAll(".plotly-graph-div").forEach(fitFigure);
    markTables();
  }
  window.hamvizFit = fitAll;
  var timer = null;
  window.addEventListener("resize", function () { clearTimeout(timer); timer = setTimeout(fitAll, 150); });
  window.addEventListener("load", function () {
    fitAll();
    [300, 1000, 2500, 5000].forEach(function (t) { setTimeout(fitAll, t); });
  });
  document.addEventListener("DOMContentLoaded", markTables);
})();
