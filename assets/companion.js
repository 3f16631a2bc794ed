/* The learner's companion: notes, skill-check scores, a practice queue, progress.
 *
 * Everything is kept in this browser's localStorage under "<course>:companion:v<N>:"
 * and nothing is sent anywhere. The page describes itself in window.STEPLAB_PAGE
 * (written by book_ext/companion.py); the practice page also has the course's
 * questions in window.STEPLAB_COURSE and jupyterquiz's renderer (show_questions).
 */
(function () {
  "use strict";

  var PAGE = window.STEPLAB_PAGE;
  if (!PAGE) return;

  var ROOT = document.documentElement.getAttribute("data-content_root") || "";
  var NOTE_LIMIT = 8000;
  var PASS_FRACTION = 0.75;     // a skill check is passed with 3 of 4 right at the first try
  var READ_SECONDS = 90;        // a page open and visible this long counts as read
  var RIGHTS_TO_LEARN = 2;      // right answers in a row that take a question off the practice queue

  // ------------------------------------------------------------------ storage

  var NAMESPACE = PAGE.course + ":companion:";
  var PREFIX = NAMESPACE + "v" + PAGE.version + ":";
  // MIGRATIONS[n] turns the layout of version n into that of version n + 1.
  var MIGRATIONS = {};

  function store() { return window.localStorage; }

  function load(name, fallback) {
    try {
      var raw = store().getItem(PREFIX + name);
      return raw === null ? fallback : JSON.parse(raw);
    } catch (err) {
      report(err);
      return fallback;
    }
  }

  function save(name, value) {
    try {
      store().setItem(PREFIX + name, JSON.stringify(value));
      return true;
    } catch (err) {
      report(err);
      return false;
    }
  }

  function remove(name) {
    try { store().removeItem(PREFIX + name); } catch (err) { report(err); }
  }

  function names(start) {
    var out = [];
    try {
      for (var i = 0; i < store().length; i++) {
        var k = store().key(i);
        if (k && k.indexOf(PREFIX + start) === 0) out.push(k.slice(PREFIX.length));
      }
    } catch (err) { report(err); }
    return out;
  }

  function migrate() {
    try {
      var versionKey = NAMESPACE + "version";
      var stored = parseInt(store().getItem(versionKey) || "0", 10);
      for (var v = stored; v > 0 && v < PAGE.version; v++) {
        if (MIGRATIONS[v]) MIGRATIONS[v]();
      }
      if (stored !== PAGE.version) store().setItem(versionKey, String(PAGE.version));
    } catch (err) { report(err); }
  }

  var messageShown = false;
  function report(err) {
    if (messageShown) return;
    var full = err && (err.name === "QuotaExceededError" || err.code === 22);
    showMessage(full
      ? "Your browser's storage for this site is full: the last change was not saved."
      : "Your browser does not let this site store data: notes and progress were not saved.");
  }

  function showMessage(text) {
    messageShown = true;
    var box = document.createElement("div");
    box.className = "companion-message";
    box.setAttribute("role", "status");
    var p = document.createElement("span");
    p.textContent = text;
    var close = button("Dismiss", function () { box.remove(); });
    box.appendChild(p);
    box.appendChild(close);
    document.body.appendChild(box);
  }

  // ------------------------------------------------------------------ helpers

  function button(label, onClick, cls) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "companion-button" + (cls ? " " + cls : "");
    b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function pageUrl(doc) { return ROOT + doc + ".html"; }

  function absolute(href) { return new URL(href, window.location.href).href.split("#")[0]; }

  // ------------------------------------------------------------------ notes

  function setUpNotes() {
    var name = "note:" + PAGE.doc;
    var toggle = button("Notes", function () { setOpen(panel.hidden); }, "companion-notes-toggle");
    toggle.setAttribute("aria-expanded", "false");
    toggle.setAttribute("aria-controls", "companion-notes");

    var panel = el("section", "companion-notes");
    panel.id = "companion-notes";
    panel.hidden = true;
    panel.setAttribute("aria-labelledby", "companion-notes-heading");
    var heading = el("p", "companion-notes-heading", "Your notes on this page");
    heading.id = "companion-notes-heading";
    var privacy = el("p", "companion-notes-privacy", "Notes stay private to your browser.");
    var label = el("label", "companion-sr", "Notes on " + PAGE.title);
    label.htmlFor = "companion-notes-text";
    var text = el("textarea", "companion-notes-text");
    text.id = "companion-notes-text";
    text.maxLength = NOTE_LIMIT;
    text.rows = 10;
    text.setAttribute("aria-describedby", "companion-notes-count companion-notes-privacy");
    privacy.id = "companion-notes-privacy";
    var count = el("p", "companion-notes-count");
    count.id = "companion-notes-count";
    var actions = el("div", "companion-notes-actions");
    actions.appendChild(button("Export all notes", exportNotes));
    actions.appendChild(button("Clear this note", function () {
      if (!text.value) return;
      if (!window.confirm("Delete your note on this page? This cannot be undone.")) return;
      text.value = "";
      remove(name);
      updateCount();
      text.focus();
    }));
    actions.appendChild(button("Close", function () { setOpen(false); }));
    [heading, privacy, label, text, count, actions].forEach(function (c) { panel.appendChild(c); });

    var saved = load(name, null);
    if (saved && typeof saved.text === "string") text.value = saved.text.slice(0, NOTE_LIMIT);

    function updateCount() {
      count.textContent = text.value.length + " / " + NOTE_LIMIT + " characters";
      count.classList.toggle("companion-notes-full", text.value.length >= NOTE_LIMIT);
      toggle.textContent = text.value ? "Notes (" + text.value.length + ")" : "Notes";
    }
    function setOpen(open) {
      panel.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
      if (open) text.focus(); else toggle.focus();
    }
    text.addEventListener("input", function () {
      if (text.value.length > NOTE_LIMIT) text.value = text.value.slice(0, NOTE_LIMIT);
      updateCount();
      if (text.value) {
        save(name, { text: text.value, title: PAGE.title, doc: PAGE.doc, updated: new Date().toISOString() });
      } else {
        remove(name);
      }
    });
    panel.addEventListener("keydown", function (e) {
      if (e.key === "Escape") setOpen(false);
    });
    updateCount();
    var dock = el("div", "companion-notes-dock");
    dock.appendChild(panel);
    dock.appendChild(toggle);
    document.body.appendChild(dock);
  }

  function notesMarkdown() {
    var docs = names("note:").map(function (n) { return n.slice("note:".length); }).sort();
    var out = ["# My notes", "", "Exported " + new Date().toISOString().slice(0, 10) + ".", ""];
    docs.forEach(function (doc) {
      var note = load("note:" + doc, null);
      if (!note || !note.text) return;
      out.push("## " + (note.title || doc), "", "<" + absolute(pageUrl(doc)) + ">", "", note.text, "");
    });
    if (docs.length === 0) out.push("No notes yet.", "");
    return out.join("\n");
  }

  function exportNotes() {
    var blob = new Blob([notesMarkdown()], { type: "text/markdown" });
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = PAGE.course + "-notes.md";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(a.href); }, 1000);
  }

  // ------------------------------------------------------------------ quiz answers

  /* jupyterquiz draws one .Quiz per question (data-qnum = its index in the JSON),
   * answer labels .MCButton with data-correct, numeric inputs .Input-text, and a
   * .Feedback whose class becomes "correct" or "incorrect". Its own handlers run on
   * the label (onclick) and the input (onkeypress); these listeners on the container
   * run after them, so the feedback already shows the outcome. */
  function watchAnswers(container, onResult) {
    var pending = [];
    function settle() {
      var seen = pending;
      pending = [];
      seen.forEach(function (target) {
        var wrapper = target.closest(".Quiz");
        var fb = wrapper && wrapper.querySelector(".Feedback");
        if (!fb) return;
        var result = null, pick;
        if (target.classList.contains("MCButton")) {
          pick = target.getAttribute("data-feedback") || target.textContent.trim();
          var many = parseInt(fb.dataset.numcorrect, 10) > 1;
          if (target.dataset.correct !== "true") result = "wrong";
          else if (!many || parseInt(fb.dataset.answeredcorrect, 10) >= parseInt(fb.dataset.numcorrect, 10)) result = "right";
        } else {
          pick = target.value;
          if (fb.classList.contains("correct")) result = "right";
          else if (fb.classList.contains("incorrect")) result = "wrong";
        }
        if (result) onResult(wrapper, parseInt(wrapper.dataset.qnum, 10), result, pick);
      });
    }
    function queue(target) {
      // A click on a label also clicks its radio button: one answer, counted once.
      if (pending.indexOf(target) < 0) pending.push(target);
      setTimeout(settle, 0);
    }
    container.addEventListener("click", function (e) {
      var label = e.target.closest && e.target.closest("label.MCButton");
      if (label && container.contains(label)) queue(label);
    });
    container.addEventListener("keypress", function (e) {
      if ((e.key === "Enter" || e.keyCode === 13) && e.target.classList.contains("Input-text")) queue(e.target);
    });
  }

  function nameQuizInputs(container) {
    // Give each answer control the question as its accessible name (the answer text alone,
    // often a formula, does not say what is asked).
    container.querySelectorAll(".Quiz").forEach(function (wrapper) {
      var q = wrapper.querySelector("[id^='quizQn']");
      if (!q) return;
      wrapper.querySelectorAll("input.Input-text").forEach(function (inp) {
        var lab = wrapper.querySelector(".InpLabel");
        if (lab && !lab.id) lab.id = inp.id + "-label";
        inp.setAttribute("aria-labelledby", q.id + (lab ? " " + lab.id : ""));
      });
      var group = wrapper.querySelector(".Answer");
      if (group && wrapper.querySelector("label.MCButton")) {
        group.setAttribute("role", "radiogroup");
        group.setAttribute("aria-labelledby", q.id);
      }
    });
    nameAnswers(container);
    // MathJax typesets the answers after they are drawn: name them again from the result.
    var pending = false;
    new MutationObserver(function () {
      if (pending) return;
      pending = true;
      setTimeout(function () { pending = false; nameAnswers(container); }, 0);
    }).observe(container, { childList: true, subtree: true });
  }

  /* The text a screen reader speaks for a node: typeset formulas read from the MathML that
   * MathJax keeps beside them, token by token ("( − 0.03 , − 0.03 )"), the rest as it is. */
  function spokenText(node) {
    var clone = node.cloneNode(true);
    clone.querySelectorAll("input").forEach(function (i) { i.remove(); });
    clone.querySelectorAll("mjx-container").forEach(function (m) {
      var tokens = m.querySelectorAll("mjx-assistive-mml mi, mjx-assistive-mml mn, mjx-assistive-mml mo, mjx-assistive-mml mtext");
      var words = Array.prototype.map.call(tokens, function (t) { return t.textContent; });
      m.replaceWith(document.createTextNode(" " + words.join(" ") + " "));
    });
    return clone.textContent.replace(/\s+/g, " ").trim();
  }

  function nameAnswers(container) {
    // An answer that is only a formula gives its radio button no name a browser computes
    // (the formula's visible glyphs are hidden from assistive technology): name it in words.
    container.querySelectorAll("label.MCButton").forEach(function (lab) {
      var inp = lab.querySelector("input");
      var text = spokenText(lab);
      if (inp && text && inp.getAttribute("aria-label") !== text) inp.setAttribute("aria-label", text);
    });
  }

  function whenDrawn(selector, root, then) {
    var found = root.querySelector(selector);
    if (found) { then(found); return; }
    var obs = new MutationObserver(function () {
      var f = root.querySelector(selector);
      if (f) { obs.disconnect(); then(f); }
    });
    obs.observe(root, { childList: true, subtree: true });
    setTimeout(function () { obs.disconnect(); }, 20000);
  }

  // ------------------------------------------------------------------ scores

  function quizRecord(doc) { return load("quiz:" + doc, null); }

  function score(record) {
    var right = 0, answered = 0;
    Object.keys(record.answers || {}).forEach(function (q) {
      answered++;
      if (record.answers[q].first === "right") right++;
    });
    return { right: right, answered: answered, total: record.total,
             passed: answered >= record.total && right >= Math.ceil(PASS_FRACTION * record.total) };
  }

  function scoreText(record) {
    var s = score(record);
    var text = s.right + "/" + s.total;
    if (s.answered < s.total) text += " (" + s.answered + " of " + s.total + " answered)";
    else if (s.passed) text += ", passed";
    return text;
  }

  function setUpScore() {
    var main = document.querySelector("main") || document.body;
    whenDrawn(".Quiz", main, function (first) {
      var container = first.parentElement;
      var total = container.querySelectorAll(".Quiz").length;
      var name = "quiz:" + PAGE.doc;
      var record = quizRecord(PAGE.doc) || { total: total, answers: {} };
      record.total = total;

      var bar = el("div", "companion-quiz-bar");
      var shown = el("p", "companion-quiz-score");
      shown.setAttribute("role", "status");
      var retry = button("Retry the skill check", function () {
        record = { total: total, answers: {} };
        remove(name);
        resetQuiz(container);
        render();
        showMarks();
        var firstInput = container.querySelector("label.MCButton input, input.Input-text");
        if (firstInput) firstInput.focus();
      });
      bar.appendChild(shown);
      bar.appendChild(retry);
      container.parentElement.insertBefore(bar, container);
      nameQuizInputs(container);

      var header = document.querySelector("[data-companion-score]");
      function render() {
        var text = scoreText(record);
        shown.textContent = "Your score: " + text + (Object.keys(record.answers).length ? "" : " (first answers count)");
        if (header) {
          header.hidden = false;
          header.innerHTML = "";
          var section = container.closest("section[id]");
          var a = el(section ? "a" : "span", "", "Skill check: " + text);
          if (section) a.href = "#" + section.id;
          header.appendChild(a);
        }
        container.querySelectorAll(".Quiz").forEach(function (w) {
          var prev = record.answers[w.dataset.qnum];
          var tag = w.querySelector(".companion-earlier");
          if (!prev) { if (tag) tag.remove(); return; }
          if (!tag) {
            tag = el("p", "companion-earlier");
            w.insertBefore(tag, w.firstChild);
          }
          tag.textContent = prev.first === "right" ? "You answered this right at the first try."
            : "Your first answer to this was wrong; it is in the practice queue.";
        });
      }
      render();

      watchAnswers(container, function (wrapper, qnum, result, pick) {
        var a = record.answers[qnum] || { first: result, picks: [] };
        a.last = result;
        a.picks.push(pick);
        record.answers[qnum] = a;
        save(name, record);
        if (result === "wrong") enqueue(PAGE.doc + "#" + qnum);
        render();
        showMarks();
      });
    });
  }

  function resetQuiz(container) {
    container.querySelectorAll("label.MCButton").forEach(function (l) {
      l.className = "MCButton";
      l.dataset.answered = 0;
      var r = l.querySelector("input");
      if (r) r.checked = false;
    });
    container.querySelectorAll("input.Input-text").forEach(function (i) {
      i.value = "";
      i.className = "Input-text";
    });
    container.querySelectorAll(".Feedback").forEach(function (f) {
      f.className = "Feedback";
      f.innerHTML = "";
      f.dataset.answeredcorrect = 0;
    });
  }

  // ------------------------------------------------------------------ practice queue (Leitner)

  function practiceState() {
    var s = load("practice", null);
    return s && s.items ? s : { round: 1, items: {}, learned: 0 };
  }

  function enqueue(id) {
    var s = practiceState();
    s.items[id] = { box: 1, rights: 0, due: s.round };
    save("practice", s);
  }

  // Box b is seen every 2^(b-1) rounds: box 1 every round, box 2 every other round.
  function interval(box) { return Math.pow(2, box - 1); }

  function practiceAnswer(id, result) {
    var s = practiceState();
    var item = s.items[id];
    if (!item) return "";
    var msg;
    if (result === "right") {
      item.rights++;
      if (item.rights >= RIGHTS_TO_LEARN) {
        delete s.items[id];
        s.learned = (s.learned || 0) + 1;
        msg = "Right again: answered right twice in a row, so it leaves the queue.";
      } else {
        item.box++;
        item.due = s.round + interval(item.box);
        msg = "Right. It moves to box " + item.box + " and comes back in " + interval(item.box) + " rounds.";
      }
    } else {
      item.box = 1;
      item.rights = 0;
      item.due = s.round + 1;
      msg = "Not yet. It goes back to box 1 and comes back next round.";
    }
    save("practice", s);
    return msg;
  }

  function setUpPractice() {
    var root = document.getElementById("companion-practice");
    var course = window.STEPLAB_COURSE;
    if (!root || !course || typeof window.show_questions !== "function") return;
    var titles = {};
    course.pages.forEach(function (p) { titles[p.doc] = p.title; });

    function render() {
      var s = practiceState();
      root.innerHTML = "";
      var ids = Object.keys(s.items);
      var due = ids.filter(function (id) { return s.items[id].due <= s.round && course.questions[id]; });
      var status = el("p", "companion-practice-status");
      status.setAttribute("role", "status");
      status.textContent = ids.length === 0
        ? "No question is waiting. A question you answer wrongly in a skill check comes here."
        : "Round " + s.round + ": " + due.length + " of the " + ids.length +
          " questions in the queue " + (due.length === 1 ? "is" : "are") + " due.";
      root.appendChild(status);
      if (s.learned) root.appendChild(el("p", "companion-practice-learned",
        s.learned + (s.learned === 1 ? " question" : " questions") + " learned and taken off the queue."));
      due.forEach(function (id, n) { root.appendChild(card(id, s.items[id], n)); });
      if (ids.length) {
        var next = button("Start the next round", function () {
          var st = practiceState();
          st.round++;
          save("practice", st);
          render();
          status = root.querySelector(".companion-practice-status");
          if (status) status.focus();
        }, "companion-practice-next");
        root.appendChild(next);
      }
      var st = root.querySelector(".companion-practice-status");
      if (st) st.tabIndex = -1;
    }

    function card(id, item, n) {
      var doc = id.split("#")[0];
      var box = el("section", "companion-practice-card");
      box.dataset.question = id;
      var headingId = "companion-practice-q" + n;
      box.setAttribute("aria-labelledby", headingId);
      var head = el("p", "companion-practice-source");
      head.id = headingId;
      head.appendChild(document.createTextNode("Question " + (n + 1) + ", from "));
      var a = el("a", "", titles[doc] || doc);
      a.href = pageUrl(doc);
      head.appendChild(a);
      head.appendChild(document.createTextNode(" (box " + item.box + ")"));
      box.appendChild(head);
      var quiz = el("div", "companion-practice-quiz");
      quiz.id = "companion-practice-quiz" + n;
      quiz.dataset.shufflequestions = "False";
      quiz.dataset.shuffleanswers = "True";
      quiz.dataset.preserveresponses = "false";
      quiz.dataset.numquestions = "1";
      quiz.dataset.maxwidth = "600";
      box.appendChild(quiz);
      var outcome = el("p", "companion-practice-outcome");
      outcome.setAttribute("role", "status");
      box.appendChild(outcome);
      window.show_questions([course.questions[id]], quiz);
      nameQuizInputs(quiz);
      var answered = false;
      watchAnswers(quiz, function (wrapper, qnum, result) {
        if (answered) return;  // one answer per question per round
        answered = true;
        outcome.textContent = practiceAnswer(id, result);
        box.dataset.result = result;
      });
      return box;
    }

    render();
  }

  // ------------------------------------------------------------------ progress

  function readMarks() { return load("read", {}); }

  function markRead() {
    var read = readMarks();
    if (read[PAGE.doc]) return;
    read[PAGE.doc] = new Date().toISOString();
    save("read", read);
    showMarks();
  }

  function setUpReading() {
    var article = document.querySelector("article.bd-article") || document.querySelector("main");
    if (!article) return;
    var end = el("div", "companion-end");
    end.setAttribute("aria-hidden", "true");
    article.appendChild(end);
    if ("IntersectionObserver" in window) {
      var obs = new IntersectionObserver(function (entries) {
        if (entries.some(function (e) { return e.isIntersecting; })) { obs.disconnect(); markRead(); }
      });
      obs.observe(end);
    }
    var seconds = 0;
    var timer = setInterval(function () {
      if (document.visibilityState === "visible") seconds++;
      if (seconds >= READ_SECONDS) { clearInterval(timer); markRead(); }
    }, 1000);
  }

  function badge(kind, label, symbol) {
    var b = el("span", "companion-badge companion-badge-" + kind);
    b.title = label;
    var s = el("span", "", symbol);
    s.setAttribute("aria-hidden", "true");
    b.appendChild(s);
    b.appendChild(el("span", "companion-sr", " (" + label + ")"));
    return b;
  }

  function quizStatus(doc) {
    var r = quizRecord(doc);
    if (!r || !r.total) return null;
    return score(r);
  }

  function showMarks() {
    var read = readMarks();
    // The sidebar: one badge per read page, one per passed skill check.
    var byUrl = {};
    Object.keys(read).forEach(function (doc) { byUrl[absolute(pageUrl(doc))] = doc; });
    document.querySelectorAll(".companion-badge").forEach(function (b) { b.remove(); });
    document.querySelectorAll(".bd-sidebar-primary nav a.reference.internal").forEach(function (a) {
      var url = absolute(a.getAttribute("href"));
      var doc = byUrl[url] || docOf(url);
      if (!doc) return;
      if (read[doc]) a.appendChild(badge("read", "read", "✓"));
      var q = quizStatus(doc);
      if (q && q.passed) a.appendChild(badge("passed", "skill check passed", "★"));
    });
    // The contents and overview pages' marks.
    document.querySelectorAll("[data-companion-read]").forEach(function (s) {
      var doc = s.getAttribute("data-companion-read");
      s.textContent = read[doc] ? "read" : "not read yet";
      s.classList.toggle("companion-done", !!read[doc]);
    });
    var passed = 0, checks = 0, nRead = 0, pages = 0;
    document.querySelectorAll("[data-companion-quiz]").forEach(function (s) {
      var doc = s.getAttribute("data-companion-quiz");
      var q = quizStatus(doc);
      checks++;
      if (q && q.passed) passed++;
      s.textContent = !q || q.answered === 0 ? "skill check not taken"
        : "skill check " + q.right + "/" + q.total + (q.passed ? ", passed" : q.answered < q.total ? ", unfinished" : ", not passed yet");
      s.classList.toggle("companion-done", !!(q && q.passed));
    });
    document.querySelectorAll("[data-companion-read]").forEach(function (s) {
      pages++;
      if (read[s.getAttribute("data-companion-read")]) nRead++;
    });
    var summary = document.querySelector("[data-companion-summary]");
    if (summary) {
      summary.textContent = "You have read " + nRead + " of " + pages + " pages and passed " +
        passed + " of " + checks + " skill checks.";
    }
  }

  var docByUrl = null;
  function docOf(url) {
    // Lessons whose skill check is stored but which are not marked read.
    if (docByUrl === null) {
      docByUrl = {};
      names("quiz:").forEach(function (n) {
        var doc = n.slice("quiz:".length);
        docByUrl[absolute(pageUrl(doc))] = doc;
      });
    }
    return docByUrl[url];
  }

  function setUpReset() {
    document.querySelectorAll("[data-companion-reset]").forEach(function (b) {
      b.addEventListener("click", function () {
        remove("read");
        remove("practice");
        names("quiz:").forEach(remove);
        docByUrl = null;
        showMarks();
        var summary = document.querySelector("[data-companion-summary]");
        if (summary) summary.textContent = "Progress reset. " + summary.textContent;
      });
    });
  }

  // ------------------------------------------------------------------ start

  function start() {
    migrate();
    if (window.STEPLAB_STORAGE_FALLBACK) {
      showMessage("Your browser does not let this site store data: notes and progress last only until you leave the page.");
    }
    if (PAGE.notes) setUpNotes();
    if (PAGE.quiz) setUpScore();
    if (PAGE.kind === "lesson" || PAGE.kind === "theory") setUpReading();
    if (PAGE.kind === "practice") setUpPractice();
    setUpReset();
    showMarks();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
