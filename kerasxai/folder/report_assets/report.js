// kerasxai report: cards for a run folder's explanations. Plain JavaScript, no library, nothing fetched.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("kerasxai-data").textContent);
  const CHUNK = 60;          // cards drawn at a time; more as the page scrolls
  const THUMB = 132;         // px, as --thumb in the stylesheet
  const cards = D.cards;
  const state = { sort: "conf-desc", pred: "", truth: "", wrong: false, flat: false, query: "", method: "" };
  let order = [];            // indices into cards: filtered, then sorted
  let drawn = 0;
  let opened = -1;           // position in order of the card shown in the detail view
  let returnFocus = null;

  // ------------------------------------------------------------------ helpers
  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key === "style") node.style.cssText = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of [].concat(children || [])) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }
  const pct = (p) => (p === null || p === undefined ? "–" : (100 * p).toFixed(1) + "%");
  const num = (x) => (x === null || x === undefined ? "–" : x.toFixed(3));
  const baseName = (f) => String(f).split(/[\\/]/).pop();
  const plural = (n, word) => n.toLocaleString("en") + " " + word + (n === 1 ? "" : "s");
  const shownMethods = () => (state.method ? [state.method] : D.methods);

  // ------------------------------------------------------------------ header and notices
  function drawHeader() {
    const r = D.run;
    const facts = [];
    const fact = (name, value) => { if (value !== null && value !== undefined && value !== "") facts.push(el("li", {}, [name + " ", el("b", { text: String(value) })])); };
    fact("model", r.model);
    fact("weights", r.weights);
    fact("methods", (r.methods && r.methods.length ? r.methods : D.methods).join(", "));
    fact("layer", r.layer || (r.model ? "default" : null));
    fact("target", r.target === null || r.target === undefined ? (r.model ? "top class of each image" : null) : r.target);
    fact("images", r.images !== null && r.images !== undefined && r.images !== cards.length
      ? cards.length.toLocaleString("en") + " of " + Number(r.images).toLocaleString("en") : cards.length.toLocaleString("en"));
    fact("started", r.started);
    fact("finished", r.finished || (r.started ? "not finished" : null));
    fact("kerasxai", r.kerasxai_version);
    document.getElementById("head").append(
      el("h1", { text: "kerasxai report: " + (r.model || D.title) }),
      el("ul", { className: "facts" }, facts));

    const notices = document.getElementById("notices");
    const say = (text, warn) => notices.append(el("p", { className: warn ? "notice warn" : "notice", text }));
    if (String(r.weights).toLowerCase() === "none")
      say("Random weights (weights: none): these maps explain an untrained model, not what a trained one looks at.", true);
    if (!D.overlays)
      say("Overlays were not written for this run: cards show each method's statistics (max, mean, flat) only. " +
          "Run kerasxai explain again with --overlays to see them.");
    if (r.started && !r.finished)
      say("This run has not finished (or was interrupted): " + plural(cards.length, "image") + " so far" +
          (r.listed || r.images ? " of " + Number(r.listed || r.images).toLocaleString("en") : "") + ".", true);
    const failed = cards.filter((c) => c.error).length;
    if (failed)
      say(plural(failed, "image") + " could not be read or explained; their cards say why.", true);
    D.problems.slice(0, 8).forEach((p) => say(p, true));
    if (D.problems.length > 8) say("… and " + (D.problems.length - 8) + " more problems.", true);
  }

  // ------------------------------------------------------------------ controls
  function counts(key) {
    const seen = new Map();
    for (const c of cards) if (c[key] !== null && c[key] !== undefined) seen.set(c[key], (seen.get(c[key]) || 0) + 1);
    return [...seen.entries()].sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])));
  }
  function select(id, label, options, key) {
    const node = el("select", { id, onchange: (e) => { state[key] = e.target.value; apply(); } },
      options.map(([value, text]) => el("option", { value, text })));
    return el("label", { for: id }, [label, node]);
  }
  function checkbox(id, label, key, enabled, title) {
    const box = el("input", { type: "checkbox", id, disabled: !enabled, onchange: (e) => { state[key] = e.target.checked; apply(); } });
    return el("label", { for: id, className: enabled ? null : "off", title }, [box, label]);
  }
  function scale(what) {
    const gradient = D.scales[D.methods[0]] || "linear-gradient(to right, #00007f, #0000ff, #00ffff, #ffff00, #ff0000, #7f0000)";
    return el("div", { className: "scale", "aria-label": "colour scale" }, [
      el("div", { className: "bar", style: "background: " + gradient }),
      el("div", { className: "ticks" }, [el("span", { text: "0" }), el("span", { text: "0.5" }), el("span", { text: "1" })]),
      el("div", { className: "what", text: "0 = least, 1 = most evidence for " + what }),
    ]);
  }
  function drawControls() {
    const nav = document.getElementById("controls");
    const wrong = cards.filter((c) => c.correct === false).length;
    const flat = cards.filter((c) => c.flat.length).length;
    nav.append(...[
      select("sort", "Sort", [["conf-desc", "confidence: high to low"], ["conf-asc", "confidence: low to high"],
        ["file", "file name"], ["run", "run order"]], "sort"),
      select("pred", "Predicted", [["", "all classes"]].concat(counts("pred").map(([v, n]) => [v, v + " (" + n + ")"])), "pred"),
      D.labels ? select("truth", "True class", [["", "all classes"]].concat(counts("label").map(([v, n]) => [v, v + " (" + n + ")"])), "truth") : null,
      checkbox("wrong", "misclassified only (" + wrong + ")", "wrong", D.labels,
        D.labels ? null : "no true labels in this run: the images were not in class folders"),
      checkbox("flat", "flat maps (" + flat + ")", "flat", true, "images where at least one method found no positive evidence"),
      el("label", { for: "query" }, ["File", el("input", { type: "search", id: "query", placeholder: "name contains…",
        oninput: (e) => { state.query = e.target.value.trim().toLowerCase(); apply(); } })]),
      D.methods.length > 1 ? select("method", "On cards", [["", "every method"]].concat(D.methods.map((m) => [m, m])), "method") : null,
      scale(D.run.target === null || D.run.target === undefined ? "each image's top class"
        : D.run.target === "label" ? "each image's true class" : "the target"),
    ].filter(Boolean));
  }

  // ------------------------------------------------------------------ filtering, sorting, drawing
  function apply() {
    order = [];
    for (let i = 0; i < cards.length; i++) {
      const c = cards[i];
      if (state.pred && c.pred !== state.pred) continue;
      if (state.truth && c.label !== state.truth) continue;
      if (state.wrong && c.correct !== false) continue;
      if (state.flat && !c.flat.length) continue;
      if (state.query && c.file.toLowerCase().indexOf(state.query) < 0) continue;
      order.push(i);
    }
    const conf = (i) => (cards[i].conf === null ? -1 : cards[i].conf);
    if (state.sort === "conf-desc") order.sort((a, b) => conf(b) - conf(a) || a - b);
    else if (state.sort === "conf-asc") order.sort((a, b) => conf(a) - conf(b) || a - b);
    else if (state.sort === "file") order.sort((a, b) => cards[a].file.localeCompare(cards[b].file) || a - b);
    else order.sort((a, b) => cards[a].n - cards[b].n);
    document.documentElement.style.setProperty("--card", (8 + (1 + shownMethods().length) * (THUMB + 4) + 12) + "px");
    document.getElementById("grid").replaceChildren();
    drawn = 0;
    const count = document.getElementById("count");
    count.textContent = order.length === cards.length ? plural(cards.length, "image")
      : plural(order.length, "image") + " of " + cards.length.toLocaleString("en") + " match";
    count.dataset.matching = String(order.length);
    drawMore();
  }
  function tile(caption, content) {
    return el("figure", { className: "tile" }, [el("div", { className: "box" }, content), el("figcaption", { text: caption, title: caption })]);
  }
  function methodContent(c, m, large) {
    const s = c.stats[m];
    if (s && s.flat && c.nothing)
      return el("div", { className: "placeholder flat" }, [el("span", { text: "nothing to explain" }),
        large ? el("p", { text: "No pixel of this image is in the target's region, " + (c.target || "the target") +
          ": there is nothing to explain, and every map is all zeros." }) : null]);
    if (s && s.flat)
      return el("div", { className: "placeholder flat" }, [el("span", { text: "flat: no positive evidence" }),
        large ? el("p", { text: "The map is all zeros: " + m + " found no positive evidence for " + (c.target || "the target") +
          (c.layer ? " at " + c.layer : "") + ". Nothing to overlay." }) : null]);
    if (c.overlays && c.overlays[m])
      return el("img", { src: c.overlays[m], alt: m + " overlay for " + baseName(c.file), loading: large ? "eager" : "lazy", decoding: "async" });
    const why = c.overlays && m in c.overlays ? "overlay file missing" : "no overlay written";
    return el("div", { className: "placeholder" }, s
      ? [el("div", { className: "stat", text: "max " + num(s.max) }), el("div", { className: "stat", text: "mean " + num(s.mean) }), el("div", { text: why })]
      : [el("div", { text: why })]);
  }
  function imageContent(c, large) {
    return c.image ? el("img", { src: c.image, alt: baseName(c.file), loading: large ? "eager" : "lazy", decoding: "async" })
      : el("div", { className: "placeholder", text: c.missing.length ? "image file missing" : "no display image" });
  }
  function truth(c) {
    if (c.label === null) return null;
    return el("span", { className: "truth " + (c.correct === false ? "no" : c.correct ? "ok" : ""),
      text: "true: " + c.label + (c.correct === false ? " ✗" : c.correct ? " ✓" : "") });
  }
  function card(c, position) {
    const methods = shownMethods();
    return el("div", {
      className: "card" + (c.correct === false ? " wrong" : ""), tabindex: "0", role: "button",
      "data-id": c.id, "data-pos": String(position), "data-conf": c.conf === null ? "" : String(c.conf),
      "aria-label": baseName(c.file) + ": " + (c.error ? "error: " + c.error : (c.pred || "no prediction") + " " + pct(c.conf) +
        (c.explains ? ", map explains " + c.explains : "")),
      onclick: () => openDetail(position),
      onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openDetail(position); } },
    }, [
      el("div", { className: "thumbs" }, [tile("image", imageContent(c, false))].concat(methods.map((m) => tile(m, methodContent(c, m, false))))),
      el("div", { className: "meta" }, [
        c.error ? el("span", { className: "badge warn", text: c.error, title: c.error })
          : el("span", { className: "pred", text: c.pred || "no prediction" }),
        c.error ? null : el("span", { className: "prob", text: pct(c.conf) }),
        truth(c),
        c.explains ? el("span", { className: "explains" }, ["map explains: ", el("b", { text: c.explains })]) : null,
        c.nothing ? el("span", { className: "badge warn", text: "nothing to explain",
          title: "the target's region is empty in this image: every map is all zeros" })
          : c.flat.length ? el("span", { className: "badge", text: "flat: " + c.flat.join(", ") }) : null,
        c.missing.length ? el("span", { className: "badge warn", text: plural(c.missing.length, "file") + " missing" }) : null,
        el("span", { className: "file", text: c.file, title: c.file }),
      ]),
    ]);
  }
  function drawMore() {
    const grid = document.getElementById("grid");
    const end = Math.min(order.length, drawn + CHUNK);
    const part = document.createDocumentFragment();
    for (; drawn < end; drawn++) part.append(card(cards[order[drawn]], drawn));
    grid.append(part);
    // still at the bottom (a tall screen, a short chunk)? keep going on the next frame
    if (drawn < order.length && document.getElementById("more").getBoundingClientRect().top < window.innerHeight + 600)
      requestAnimationFrame(drawMore);
  }

  // ------------------------------------------------------------------ detail view
  function row(cells, header) {
    return el("tr", {}, cells.map((c, i) => el(header ? "th" : "td", { className: !header && i > 0 && typeof c === "number" ? "num" : null, text: typeof c === "number" ? c.toFixed(4) : c })));
  }
  function openDetail(position) {
    if (position < 0 || position >= order.length) return;
    if (opened < 0) returnFocus = document.activeElement;
    opened = position;
    const c = cards[order[position]];
    const box = document.getElementById("detail");
    const close = el("button", { type: "button", id: "close", text: "close ✕", onclick: closeDetail });
    const panels = [el("figure", { className: "panel" }, [el("div", { className: "frame" }, imageContent(c, true)),
      el("figcaption", {}, [el("b", { text: "image" }), c.size ? " · original " + c.size[1] + "×" + c.size[0] + " px" : ""])])];
    for (const m of D.methods) {
      const s = c.stats[m];
      panels.push(el("figure", { className: "panel" }, [el("div", { className: "frame" }, methodContent(c, m, true)),
        el("figcaption", {}, [el("b", { text: m + (D.input_methods.includes(m) ? " @ input" : (D.attention_methods || []).includes(m) ? " @ attention" : c.layer ? " @ " + c.layer : "") }),
          s ? " · max " + num(s.max) + " · mean " + num(s.mean) : ""])]));
    }
    const top = el("table", {}, [el("caption", { text: "top classes" }), row(["#", "class", "probability"], true)]
      .concat(c.top.map((t, i) => row([String(i + 1), (t[1] || "class " + t[0]) + (t[1] && t[0] !== null ? " (" + t[0] + ")" : ""), pct(t[2])]))));
    const stats = el("table", {}, [el("caption", { text: "maps" }), row(["method", "flat", "max", "mean"], true)]
      .concat(D.methods.map((m) => { const s = c.stats[m]; return row([m, s ? (s.flat ? "yes" : "no") : "–", s ? num(s.max) : "–", s ? num(s.mean) : "–"]); })));
    box.replaceChildren(el("div", { className: "sheet" }, [
      el("div", { className: "sheet-head" }, [
        el("h2", { id: "detail-title", text: c.file }),
        el("span", { className: "prob", text: (position + 1) + " of " + order.length }),
        el("button", { type: "button", id: "prev", text: "← previous", disabled: position === 0, onclick: () => openDetail(position - 1) }),
        el("button", { type: "button", id: "next", text: "next →", disabled: position === order.length - 1, onclick: () => openDetail(position + 1) }),
        close,
      ]),
      el("div", { className: "meta" }, [
        el("span", {}, ["predicted ", el("b", { className: "pred", text: c.pred || "–" }), " ", el("span", { className: "prob", text: pct(c.conf) })]),
        truth(c),
        el("span", { className: c.explains ? "explains" : null }, ["map explains ", el("b", { text: c.explains || c.target || "–" }),
          c.layer ? " at " + c.layer : ""]),
      ]),
      el("div", { className: "legend" }, [scale(c.target || "the target"),
        D.overlays ? el("p", { className: "prob", text: "overlays: " + Math.round(100 * D.alpha) + "% colour over the photo; each map is scaled to its own maximum" }) : null]),
      el("div", { className: "panels" }, panels),
      el("div", { className: "tables" }, [top, stats]),
    ]));
    box.hidden = false;
    document.body.style.overflow = "hidden";
    close.focus();
  }
  function closeDetail() {
    const box = document.getElementById("detail");
    box.hidden = true;
    box.replaceChildren();
    document.body.style.overflow = "";
    opened = -1;
    if (returnFocus && document.contains(returnFocus)) returnFocus.focus();
  }
  document.addEventListener("keydown", (e) => {
    if (opened < 0) return;
    if (e.key === "Escape") closeDetail();
    else if (e.key === "ArrowRight") openDetail(opened + 1);
    else if (e.key === "ArrowLeft") openDetail(opened - 1);
  });
  document.getElementById("detail").addEventListener("click", (e) => { if (e.target.id === "detail") closeDetail(); });

  drawHeader();
  drawControls();
  new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting) && drawn < order.length) drawMore(); },
    { rootMargin: "600px" }).observe(document.getElementById("more"));
  apply();
})();
