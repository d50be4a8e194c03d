// The reading page: asks the API for the next lesion, shows it in the viewer, takes the read from the
// form or the keyboard (1-7 diagnosis, then 1-5 confidence, then the malignancy likelihood, Enter),
// submits it, and shows what the study reveals once the read is locked.
"use strict";

(() => {
  const root = document.getElementById("reading");
  const $ = (id) => document.getElementById(id);
  const form = $("answer");
  const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
  const page = { viewer: null, task: null, shownLesion: null, step: "diagnosis", mode: "loading" };
  window.liverread = page; // read by the browser tests and the benchmark

  function status(text, kind = "info") {
    $("status").textContent = text;
    $("status").dataset.kind = kind;
  }

  async function api(url, options = {}) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      ...options,
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = body.detail || Object.entries(body).map(([k, v]) => `${k}: ${v}`).join("; ");
      throw new Error(detail || `the server answered ${response.status}`);
    }
    return body;
  }

  function showProgress(p) {
    const session = p.sessions > 1 ? `Session ${p.session} of ${p.sessions}: ` : "";
    $("progress").textContent = `${session}${p.done} of ${p.total} lesions read`;
  }

  function resetForm() {
    form.reset();
    if (form.contains(document.activeElement)) document.activeElement.blur(); // digits choose the diagnosis again
    page.step = "diagnosis";
    $("form-error").textContent = "";
    markStep();
  }

  function markStep() {
    $("diagnosis").classList.toggle("active", page.step === "diagnosis");
    $("confidence").classList.toggle("active", page.step === "confidence");
  }

  function bar(label, value, strong) {
    const row = document.createElement("div");
    row.className = "bar" + (strong ? " strong" : "");
    row.innerHTML = `<span class="bar-label"></span><span class="bar-track"><span class="bar-fill"></span></span><span class="bar-value"></span>`;
    row.querySelector(".bar-label").textContent = label;
    row.querySelector(".bar-fill").style.width = `${(100 * value).toFixed(1)}%`;
    row.querySelector(".bar-value").textContent = `${(100 * value).toFixed(0)} %`;
    return row;
  }

  async function reveal(payload, title) {
    const out = $("model-output");
    out.replaceChildren();
    $("reveal").hidden = false;
    $("reveal-title").textContent = title;
    $("model-message").textContent = "";
    const model = payload.model;
    if (model && model.status === "done") {
      const head = document.createElement("p");
      head.innerHTML = `Model <strong></strong>: <strong></strong> · P(malignant) <strong></strong>`;
      const [version, cls, malignant] = head.querySelectorAll("strong");
      version.textContent = model.version;
      cls.textContent = model.probabilities.find((p) => p.class === model.predicted_class).title;
      malignant.textContent = `${(100 * model.malignant_probability).toFixed(0)} % (${model.predicted_malignant ? "malignant" : "benign"})`;
      out.append(head);
      for (const p of model.probabilities) out.append(bar(p.title, p.probability, p.class === model.predicted_class));
      if (model.saliency && model.saliency.length) {
        const h = document.createElement("h3");
        h.textContent = "Sequence importance";
        out.append(h);
        for (const s of model.saliency) out.append(bar(s.sequence, s.weight, false));
        const heat = Object.fromEntries(model.saliency.map((s) => [s.sequence, s.heat]));
        status("Drawing the saliency maps…");
        try {
          await page.viewer.showSaliency(heat);
          status("Saliency maps overlaid in colour.", "ready");
        } catch (error) { // the read goes on without the overlay
          status(`The saliency maps could not be shown: ${error.message}`, "error");
        }
      }
    } else if (model) {
      $("model-message").textContent = model.message;
    }
    if (payload.withheld) $("model-message").textContent = payload.withheld;
    const ref = $("reference-diagnosis");
    ref.hidden = !payload.reference;
    if (payload.reference) ref.textContent = `Reference diagnosis: ${payload.reference.title}`;
  }

  function beginLoading(text) {
    page.mode = "loading";
    for (const id of ["next", "back", "done"]) $(id).hidden = true;
    status(text);
  }

  async function showLesion(lesion, descriptor) {
    $("reveal").hidden = true;
    page.viewer.clearSaliency();
    page.shownLesion = null;
    await page.viewer.show(descriptor);
    page.shownLesion = lesion;
  }

  async function loadNext() {
    beginLoading("Loading the next lesion…");
    const next = await api(root.dataset.next);
    showProgress(next.progress);
    page.task = next.task;
    if (!next.task) return finish(next.progress);
    const aided = next.task.phase === "aided";
    $("phase").textContent = aided ? "Aided read: the model's output is shown; give your read again." : "Unaided read";
    $("phase").dataset.phase = next.task.phase;
    resetForm();
    if (page.shownLesion !== next.task.lesion) await showLesion(next.task.lesion, next.viewer);
    if (aided) await reveal(next.assist, "Model output (before your aided read)");
    const computing = aided && next.assist.model && PENDING.includes(next.assist.model.status);
    if (aided && (computing || !next.assist.revealed.length)) return wait(computing);
    form.hidden = false;
    page.mode = "reading";
    page.readyAt = performance.now();
    status("Ready.", "ready");
  }

  // An aided read waits for the model's output: while it is computed, or while another study of the reader
  // holds it back. The page asks again every POLL_MS and goes on by itself once it is shown.
  const PENDING = ["queued", "running"];
  const POLL_MS = 5000;

  function wait(computing) {
    form.hidden = true;
    $("phase").textContent = "Aided read: it waits for the model's output.";
    page.mode = "waiting";
    status(computing ? "The model's output for this lesion is being computed; the aided read opens when it is ready."
      : "This aided read waits: read the lesion in your other study first.", computing ? "info" : "error");
    setTimeout(() => { if (page.mode === "waiting") loadNext().catch(fail); }, POLL_MS);
  }

  function finish(progress) {
    form.hidden = true;
    $("reveal").hidden = true;
    $("phase").textContent = "";
    $("done").hidden = false;
    $("done-text").textContent = progress.opens_at
      ? `Session ${progress.session} is finished. The next session opens on ${new Date(progress.opens_at).toLocaleString()} (washout).`
      : "You have read every lesion of this study. Thank you.";
    page.mode = "finished";
    status("Finished.", "ready");
  }

  async function submit() {
    const data = new FormData(form);
    const missing = ["diagnosis", "confidence", "malignancy"].filter((k) => !data.get(k));
    if (missing.length) {
      $("form-error").textContent = `Please give: ${missing.join(", ")}.`;
      return;
    }
    page.mode = "submitting";
    $("submit").disabled = true;
    try {
      const body = {
        lesion: page.task.lesion, phase: page.task.phase, diagnosis: data.get("diagnosis"),
        confidence: Number(data.get("confidence")), malignancy: Number(data.get("malignancy")),
        amend: Boolean(page.task.amend),
      };
      const result = await api(root.dataset.reads, { method: "POST", body: JSON.stringify(body) });
      showProgress(result.progress);
      showHistory().catch(fail);
      if (result.feedback) {
        form.hidden = true;
        await reveal(result.feedback, "Model output for the lesion you just read");
        page.mode = "feedback";
        $("next").hidden = false;
        $("next").focus();
      } else {
        await loadNext();
      }
    } catch (error) {
      page.mode = "reading";
      $("form-error").textContent = `Your read was not saved: ${error.message}. Try again.`;
    } finally {
      $("submit").disabled = false;
    }
  }

  function onKey(event) {
    const inField = event.target.matches("input[type=number], textarea");
    if (event.key === "Enter") {
      event.preventDefault();
      if (page.mode === "reading") submit();
      else if (page.mode === "feedback") loadNext().catch(fail);
      return;
    }
    if (inField || page.mode !== "reading" || !/^[1-7]$/.test(event.key)) return;
    const n = Number(event.key);
    if (page.step === "diagnosis") {
      form.querySelectorAll("[name=diagnosis]")[n - 1].checked = true;
      page.step = "confidence";
    } else if (page.step === "confidence" && n <= 5) {
      form.querySelector(`[name=confidence][value="${n}"]`).checked = true;
      page.step = "malignancy";
      $("malignancy").focus();
    }
    markStep();
    event.preventDefault();
  }

  // Revisiting (where the study allows it): my read lesions, each viewable again; amendable where allowed.
  async function showHistory() {
    if (root.dataset.revisit !== "true") return;
    const reads = await api(root.dataset.reads);
    const latest = new Map(reads.map((r) => [`${r.lesion} ${r.phase}`, r])); // the last read of each wins
    $("history").replaceChildren(...[...latest.values()].map((read) => {
      const item = document.createElement("li");
      const view = document.createElement("button");
      view.type = "button";
      view.className = "link";
      view.textContent = `${read.diagnosis}, confidence ${read.confidence}, ${read.malignancy} %` +
        (read.phase === "aided" ? " (aided)" : "") + (read.amends ? " (amended)" : "");
      view.addEventListener("click", () => revisitRead(read).catch(fail));
      item.append(view);
      return item;
    }));
  }

  async function revisitRead(read) {
    beginLoading("Loading the lesion you read…");
    await showLesion(read.lesion, await api(`/api/studies/${root.dataset.study}/lesions/${read.lesion}/`));
    $("back").hidden = false;
    const amend = root.dataset.amend === "true";
    $("phase").textContent = amend ? "Revisiting: submit to amend this read" : "Revisiting (view only)";
    form.hidden = !amend;
    resetForm();
    if (amend) {
      form.querySelector(`[name=diagnosis][value="${read.diagnosis}"]`).checked = true;
      form.querySelector(`[name=confidence][value="${read.confidence}"]`).checked = true;
      $("malignancy").value = read.malignancy;
      page.task = { lesion: read.lesion, phase: read.phase, amend: true };
    }
    page.mode = amend ? "reading" : "revisiting";
    status("Revisiting a lesion you have read.", "ready");
  }

  function fail(error) {
    status(`Could not load the lesion: ${error.message}`, "error");
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  form.addEventListener("change", (event) => {
    if (event.target.name === "diagnosis") page.step = "confidence";
    if (event.target.name === "confidence") page.step = "malignancy";
    markStep();
  });
  $("next").addEventListener("click", () => loadNext().catch(fail));
  $("back").addEventListener("click", () => loadNext().catch(fail));
  $("mask-toggle").addEventListener("click", () => page.viewer.toggleMask());
  document.addEventListener("keydown", onKey);

  LiverReadViewer.create($("viewer"), { onStatus: (text, kind) => status(text, kind) })
    .then((viewer) => {
      page.viewer = viewer;
      showHistory().catch(fail);
      return loadNext();
    })
    .catch(fail);
})();
