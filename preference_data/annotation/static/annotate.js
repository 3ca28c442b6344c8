// Annotator page behaviour: active-time timer, keyboard shortcuts, drag-to-rank (with buttons as
// the keyboard fallback). Loaded as a file so the Content-Security-Policy can forbid inline script.
(function () {
  "use strict";
  var form = document.getElementById("judgment-form");
  if (!form) return;
  var n = parseInt(form.dataset.responses || "0", 10);

  // Active time on this item: counts only while the tab is visible.
  var active = 0, since = document.hidden ? null : performance.now();
  document.addEventListener("visibilitychange", function () {
    if (document.hidden && since !== null) { active += performance.now() - since; since = null; }
    else if (!document.hidden && since === null) { since = performance.now(); }
  });

  // ---- drag-to-rank ---------------------------------------------------------------------------
  function commit(list) {
    var items = list.querySelectorAll("li.rank-item");
    for (var i = 0; i < items.length; i++) {
      items[i].querySelector(".pos").textContent = String(i + 1);
      var input = document.getElementById(items[i].dataset.input);
      if (input) input.value = String(i + 1);
    }
    list.dataset.ranked = "1";
    var status = document.getElementById("rank-status-" + list.dataset.dimension);
    if (status) status.textContent = "Ranked: 1 = best.";
  }
  var dragging = null;
  document.addEventListener("pointerdown", function (e) {
    var li = e.target.closest && e.target.closest("li.rank-item");
    if (!li || e.target.closest("button")) return;
    e.preventDefault();
    dragging = li;
    li.classList.add("dragging");
  });
  document.addEventListener("pointermove", function (e) {
    if (!dragging) return;
    var list = dragging.parentNode, items = list.querySelectorAll("li.rank-item"), before = null;
    for (var i = 0; i < items.length; i++) {
      if (items[i] === dragging) continue;
      var box = items[i].getBoundingClientRect();
      if (e.clientY < box.top + box.height / 2) { before = items[i]; break; }
    }
    if (before) list.insertBefore(dragging, before); else list.appendChild(dragging);
  });
  document.addEventListener("pointerup", function () {
    if (!dragging) return;
    dragging.classList.remove("dragging");
    commit(dragging.parentNode);
    dragging = null;
  });
  form.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest("button[data-move]");
    if (!b) return;
    e.preventDefault();
    if (b.dataset.move === "keep") { commit(b.closest(".question").querySelector("ol.rank-list")); return; }
    var li = b.closest("li.rank-item"), list = li.parentNode;
    if (b.dataset.move === "up" && li.previousElementSibling) list.insertBefore(li, li.previousElementSibling);
    else if (b.dataset.move === "down" && li.nextElementSibling) list.insertBefore(li.nextElementSibling, li);
    commit(list);
    b.focus();
  });

  form.addEventListener("submit", function (e) {
    var submitter = e.submitter;
    if (!(submitter && submitter.id === "skip")) {
      var lists = form.querySelectorAll("ol.rank-list[data-required='1']");
      for (var i = 0; i < lists.length; i++) {
        if (lists[i].dataset.ranked !== "1") {
          e.preventDefault();
          var status = document.getElementById("rank-status-" + lists[i].dataset.dimension);
          status.textContent = "Please rank these responses (drag them, use the arrows, or keep the order).";
          status.classList.add("error");
          lists[i].scrollIntoView();
          return;
        }
      }
    }
    var t = active + (since === null ? 0 : performance.now() - since);
    document.getElementById("time_spent_s").value = (t / 1000).toFixed(2);
  });

  // ---- keyboard shortcuts -----------------------------------------------------------------------
  function isPairwiseRadio(el) { return el && el.tagName === "INPUT" && el.type === "radio" && el.dataset.pairwise === "1"; }
  function inFormControl(el) {
    return el && /^(INPUT|SELECT|TEXTAREA|BUTTON|OPTION)$/.test(el.tagName) && !isPairwiseRadio(el);
  }
  document.addEventListener("keydown", function (e) {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") { e.preventDefault(); form.requestSubmit(document.getElementById("submit")); return; }
    if (e.altKey && (e.key === "s" || e.key === "S" || e.code === "KeyS")) { e.preventDefault(); document.getElementById("skip").click(); return; }
    // Digits only answer an unanswered choice question, and never while another control has focus
    // (a digit typed into a rank list or a rating must not change an answer given elsewhere).
    if (e.ctrlKey || e.altKey || e.metaKey || inFormControl(document.activeElement)) return;
    var k = parseInt(e.key, 10);
    if (!(k >= 1 && k <= n)) return;
    var questions = form.querySelectorAll('.question[data-scale="pairwise"]'), target = null;
    for (var i = 0; i < questions.length; i++) {
      if (!questions[i].querySelector("input:checked")) { target = questions[i]; break; }
    }
    if (!target) return;
    var box = document.getElementById("pairwise-" + target.dataset.dimension + "-" + k);
    if (box) { box.checked = true; box.focus(); e.preventDefault(); }
  });
})();
