// The audit's review page: a grid of thumbnails over window.AUDIT (review/data.js, written by train.review),
// filtered and sorted in memory; cards are added a page at a time as the grid scrolls into view, so that
// 5,000 images cost only the cards on screen. No server and no fetch: the page opens from disk.
(function () {
  "use strict";
  const D = window.AUDIT;
  const items = D.images;
  const PAGE = 120;
  const $ = (id) => document.getElementById(id);
  const grid = $("grid"), viewer = $("viewer");
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const rgb = (k) => "rgb(" + (D.colours[k] || [255, 255, 255]).join(",") + ")";
  const verdictText = { pass: "pass", fail: "fail", unmatched: "no rule" };
  let view = [], shown = 0, current = -1;

  function name(it) { return it.f + (it.n ? " #" + it.n : ""); }

  function header() {
    const s = D.summary;
    $("about").textContent = s.images + " images from " + s.files + " files" +
      (s.unreadable ? " (" + s.unreadable + " unreadable)" : "") + " · " + s.annotated + " with annotation · detector " +
      D.detector.split(" + ").map((p) => p.split("/").pop()).join(" + ") + " · threshold " + D.threshold + (D.rules ? " · rules " + D.rules : "") + " · " + D.generated;
    $("about").title = "detector: " + D.detector;
    $("legend").innerHTML = D.kinds.map((k) => '<span><i style="background:' + rgb(k) + '"></i>' + esc(k) + " " +
      s.kinds[k] + "</span>").join("");
    if (s.rules.length) {
      $("rules").innerHTML = "<tr><th>rule</th><th>line</th><th>applied</th><th>failed</th></tr>" + s.rules.map((r) =>
        "<tr><td>" + esc(r.rule) + '</td><td class="n">' + (r.line || "") + '</td><td class="n">' + r.matched +
        '</td><td class="n">' + r.failed + "</td></tr>").join("");
    }
    const sel = $("kind");
    for (const k of D.kinds) sel.insertAdjacentHTML("beforeend", '<option value="' + esc(k) + '">' + esc(k) + "</option>");
  }

  function filter() {
    const kind = $("kind").value, verdict = $("verdict").value, sort = $("sort").value;
    const q = $("search").value.trim().toLowerCase();
    view = [];
    for (let i = 0; i < items.length; i++) {
      const it = items[i];
      if (verdict && it.v !== verdict) continue;
      const has = Object.keys(it.k).length > 0;
      if (kind === "@any" ? !has : kind === "@none" ? has : kind && !(kind in it.k)) continue;
      if (q && it.f.toLowerCase().indexOf(q) < 0) continue;
      view.push(i);
    }
    const conf = (i) => items[i].c * 2 + items[i].p; // detections first, then the highest score below threshold
    if (sort === "conf-desc") view.sort((a, b) => conf(b) - conf(a) || a - b);
    else if (sort === "conf-asc") view.sort((a, b) => conf(a) - conf(b) || a - b);
    grid.textContent = "";
    shown = 0;
    more();
    fill();
    const n = { pass: 0, fail: 0, unmatched: 0 };
    for (const i of view) n[items[i].v]++;
    $("count").textContent = "showing " + view.length + " of " + items.length + " images · " + n.fail + " fail · " +
      n.pass + " pass · " + n.unmatched + " no rule";
  }

  function card(j) {
    const it = items[view[j]];
    const dots = Object.keys(it.k).map((k) => '<i title="' + esc(k) + '" style="background:' + rgb(k) + '"></i>').join("");
    return '<figure class="card ' + it.v + '" data-j="' + j + '" tabindex="0"><div class="img"><img loading="lazy" ' +
      'decoding="async" alt="" src="media/' + it.i + '.t.jpg" width="' + it.t[0] + '" height="' + it.t[1] + '"></div>' +
      '<figcaption title="' + esc(name(it)) + '"><span class="v ' + it.v + '">' + verdictText[it.v] + "</span>" +
      '<span class="dots">' + dots + "</span> " + esc(name(it)) + "</figcaption></figure>";
  }

  function more() {
    const end = Math.min(view.length, shown + PAGE);
    if (end <= shown) return;
    const html = [];
    for (let j = shown; j < end; j++) html.push(card(j));
    grid.insertAdjacentHTML("beforeend", html.join(""));
    shown = end;
  }

  function fill() { // add pages while the end of the grid is within 800 px of the window
    const s = $("sentinel");
    while (shown < view.length && s.getBoundingClientRect().top < window.innerHeight + 800) more();
  }

  function open(j) {
    if (j < 0 || j >= view.length) return;
    while (j >= shown) more();
    current = j;
    const it = items[view[j]];
    for (const [id, suffix] of [["before", ".b.jpg"], ["mask", ".m.png"], ["after", ".a.jpg"]]) $(id).src = "media/" + it.i + suffix;
    $("vtitle").textContent = (j + 1) + " / " + view.length + " · " + name(it) + " · " + verdictText[it.v];
    const kinds = Object.entries(it.k).map(([k, v]) => '<li><i style="color:' + rgb(k) + '">■</i> ' + esc(k) + ": " + v[0] +
      " detection(s), " + v[1] + " px, confidence " + v[2].toFixed(3) + "</li>").join("");
    const fails = it.r.map((r) => "<li>" + esc(r) + "</li>").join("");
    $("vinfo").innerHTML = it.w + " × " + it.h + " px" + (it.d ? " · " + esc(it.d) : "") +
      "<ul>" + (kinds || "<li>no annotation found</li>") + "</ul>" + (fails ? '<ul class="v fail">' + fails + "</ul>" : "");
    viewer.hidden = false;
    const c = grid.querySelector('[data-j="' + j + '"]');
    if (c) c.scrollIntoView({ block: "nearest" });
  }

  function close() { viewer.hidden = true; const c = grid.querySelector('[data-j="' + current + '"]'); if (c) c.focus(); }

  header();
  for (const id of ["kind", "verdict", "sort"]) $(id).addEventListener("change", filter);
  $("search").addEventListener("input", filter);
  grid.addEventListener("click", (e) => { const c = e.target.closest(".card"); if (c) open(+c.dataset.j); });
  grid.addEventListener("keydown", (e) => { const c = e.target.closest(".card"); if (c && e.key === "Enter") open(+c.dataset.j); });
  $("prev").addEventListener("click", () => open(current - 1));
  $("next").addEventListener("click", () => open(current + 1));
  $("close").addEventListener("click", close);
  document.addEventListener("keydown", (e) => {
    if (viewer.hidden || e.target.tagName === "INPUT") return;
    if (e.key === "ArrowRight" || e.key === "j") open(current + 1);
    else if (e.key === "ArrowLeft" || e.key === "k") open(current - 1);
    else if (e.key === "Escape") close();
    else return;
    e.preventDefault();
  });
  new IntersectionObserver((es) => { if (es.some((e) => e.isIntersecting)) fill(); }, { rootMargin: "800px" })
    .observe($("sentinel"));
  filter();
})();
