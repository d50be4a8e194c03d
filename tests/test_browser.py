"""The reading page in a real browser (Debian chromium, headless, software WebGL) against a live server:
the viewer draws, scrolls, zooms, pans, windows and toggles the mask by pixels; reads go in by keyboard;
saliency appears in the lesion only after a read is locked; a reload resumes; readers stay apart."""

import io

import nibabel as nib
import numpy as np
import pytest
from browser import HEAT_IN_LESION, PIXELS, all_ready
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from matplotlib import image as mpimg
from test_reading import make_reader, new_study
from test_training import one_thread  # noqa: F401 (autouse: tiny networks run faster on one thread)

from inference.domain import SEQUENCES
from readerstudy.cases.models import Lesion
from readerstudy.studies.identifiers import lesion_in_study, study_lesion_id
from readerstudy.studies.models import STUDY_ADMINS_GROUP, Read, Reader
from readerstudy.studies.simulation import simulate_reads
from readerstudy.studies.viewing import served_file

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
IMAGE = ".lr-viewport canvas"


def browser_reader(username: str, group: str) -> Reader:
    """A reader who logs in through the form (``open_reading``)."""
    reader = make_reader(username, group)
    reader.user.set_password("a-long-test-password")
    reader.user.save()
    return reader


@pytest.fixture
def study(predicted):
    readers = [browser_reader("reader-a", "resident"), browser_reader("reader-b", "academic")]
    return new_study(predicted, readers, name="Browser study", feedback="model")


def open_reading(browser, live_server, study, username):
    page = browser.new_page(viewport={"width": 1500, "height": 820})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("[name=username]", username)
    page.fill("[name=password]", "a-long-test-password")
    page.click("button[type=submit]")
    page.click(f"[data-study='{study.public_id}'] a")
    page.wait_for_function(all_ready, timeout=60_000)
    return page, errors


def shot(name: str):
    """Where a screenshot goes: the git-ignored var/screenshots/ (look at them)."""
    folder = settings.VAR_DIR / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def pixels(page, selector=IMAGE) -> dict:
    return {p["name"]: p for p in page.evaluate(PIXELS, selector)}


def screenshot(locator) -> np.ndarray:
    return mpimg.imread(io.BytesIO(locator.screenshot()), format="png")


def state(page) -> dict:
    return {s["name"]: s for s in page.evaluate("liverread.viewer.state()")}


def order_of(study, reader_name) -> list[str]:
    assignment = study.assignments.get(reader__user__username=reader_name)
    return [study_lesion_id(study, Lesion.objects.get(pk=pk)) for pk in assignment.orders[0]]


def submit_by_keyboard(page, diagnosis_key: str, confidence_key: str, malignancy: str) -> None:
    page.keyboard.press(diagnosis_key)
    page.keyboard.press(confidence_key)
    page.keyboard.type(malignancy)
    page.keyboard.press("Enter")


def lesion_heat(study, lesion_id: str) -> dict[str, float]:
    """Per sequence, the largest saliency inside the lesion on the slice the viewer opens (largest area),
    read from the served files: what the overlay must show in colour."""
    lesion = lesion_in_study(study, lesion_id)
    prediction = study.prediction_for(lesion)
    heat = {}
    for sequence in SEQUENCES:
        mask = nib.load(served_file(study, lesion, sequence, "mask").path).get_fdata() > 0
        values = nib.load(served_file(study, lesion, sequence, "heat", prediction).path).get_fdata()
        k = int(np.argmax(mask.sum(axis=(0, 1))))
        heat[sequence] = float(values[:, :, k][mask[:, :, k]].max())
    return heat


def drag(page, cell, button: str, dx: float, dy: float) -> None:
    box = page.locator(f"[data-sequence={cell}]").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down(button=button)
    page.mouse.move(x + dx, y + dy, steps=6)
    page.mouse.up(button=button)


def test_a_reader_reads_three_lesions_in_the_viewer_with_feedback_after_each(browser, live_server, study):
    page, errors = open_reading(browser, live_server, study, "reader-a")
    order = order_of(study, "reader-a")

    # All seven viewports draw real pixels, and nothing is coloured before the read is locked.
    assert page.evaluate("liverread.shownLesion") == order[0]
    drawn = pixels(page)
    assert len(drawn) == 7
    for name, p in drawn.items():
        assert p["std"] > 5 and p["lit"] > 0.05 * p["width"] * p["height"], name
        assert p["coloured"] == 0, f"{name} shows colour before the read"
    page.screenshot(path=shot("reading.png"))

    # The mask overlay toggles on screen (on the focus slice).
    cell = page.locator("[data-sequence=PVP]")
    with_mask = screenshot(cell)
    page.click("#mask-toggle")
    without_mask = screenshot(cell)
    green = lambda a: int(np.sum((a[..., 1] > 0.8) & (a[..., 0] < 0.5) & (a[..., 2] < 0.6)))  # noqa: E731
    assert green(with_mask) > 20 and green(without_mask) == 0
    page.click("#mask-toggle")

    # The wheel over one viewport moves all seven, each relative to its own lesion focus.
    box = page.locator("[data-sequence=T2WI]").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 300)
    page.wait_for_timeout(300)
    scrolled = state(page)
    offsets = [s["offsetMm"] for s in scrolled.values()]
    assert all(abs(o) > 1 for o in offsets) and len({np.sign(o) for o in offsets}) == 1, offsets
    assert max(offsets) - min(offsets) < 10, offsets  # within a slice of the coarsest sequence
    after = pixels(page)
    assert all(after[n]["fingerprint"] != drawn[n]["fingerprint"] for n in drawn), "a viewport did not scroll"

    # Zoom and pan follow in all seven; window/level changes one viewport only.
    drag(page, "DWI", "right", 0, -80)
    zoomed = state(page)
    ratios = [zoomed[n]["parallelScale"] / scrolled[n]["parallelScale"] for n in zoomed]
    assert all(abs(r - ratios[0]) < 1e-6 for r in ratios) and abs(ratios[0] - 1) > 0.05, ratios
    drag(page, "LAP", "middle", 40, 25)
    panned = state(page)
    assert all(not np.allclose(panned[n]["focalPoint"], zoomed[n]["focalPoint"]) for n in panned)
    before_window = pixels(page)
    drag(page, "ADC", "left", 60, 30)
    windowed = state(page)
    assert windowed["ADC"]["voiRange"] != panned["ADC"]["voiRange"]
    assert all(windowed[n]["voiRange"] == panned[n]["voiRange"] for n in windowed if n != "ADC")
    assert pixels(page)["ADC"]["fingerprint"] != before_window["ADC"]["fingerprint"]

    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -300)  # back to the focus slices
    page.wait_for_timeout(300)
    assert all(abs(s["offsetMm"]) < 1e-3 for s in state(page).values())

    # Three reads by keyboard; after each, saliency colours appear inside the lesion wherever its heat is strong
    # (the seven maps share one scale, so a sequence that did not matter may show none).
    strong = []
    for n, keys in enumerate([("5", "4", "80"), ("1", "3", "10"), ("7", "5", "95")]):
        if n == 2:  # reload before the third: the page resumes at the right lesion
            page.reload()
            page.wait_for_function(all_ready, timeout=60_000)
            assert page.locator("#progress").inner_text() == "2 of 3 lesions read"
        assert page.evaluate("liverread.shownLesion") == order[n]
        assert all(p["coloured"] == 0 for p in pixels(page).values())
        submit_by_keyboard(page, *keys)
        page.wait_for_function("() => liverread.mode === 'feedback' && !document.getElementById('reveal').hidden")
        page.wait_for_function("() => document.getElementById('status').dataset.kind === 'ready'")
        drawn_heat = {h["name"]: h for h in page.evaluate(HEAT_IN_LESION)}
        for name, heat in lesion_heat(study, order[n]).items():
            assert drawn_heat[name]["outlined"], f"lesion {n + 1}, {name}: not on the lesion's slice"
            if heat >= 0.45:  # clearly above the overlay's transparent range (< 0.2)
                assert drawn_heat[name]["inside"] > 0, f"lesion {n + 1}, {name}: heat {heat:.2f} not drawn"
                strong.append((n, name))
        if n == 0:
            page.screenshot(path=shot("feedback.png"))
        page.keyboard.press("Enter")
        if n < 2:
            page.wait_for_function(f"() => liverread.mode === 'reading' && liverread.shownLesion === '{order[n + 1]}'")
    page.wait_for_selector("#done:not([hidden])")
    assert strong, "no lesion had strong heat on its slice: the colour check was vacuous"
    reads = Read.objects.filter(assignment__reader__user__username="reader-a").order_by("submitted_at")
    assert [(study_lesion_id(study, r.lesion), r.diagnosis, r.confidence, r.malignancy) for r in reads] == [
        (order[0], 4, 4, 80),
        (order[1], 0, 3, 10),
        (order[2], 6, 5, 95),
    ]
    assert errors == []


def test_a_second_reader_sees_nothing_of_the_first_readers_reads(browser, live_server, study):
    first, _ = open_reading(browser, live_server, study, "reader-a")
    submit_by_keyboard(first, "5", "4", "80")
    first.wait_for_function("() => liverread.mode === 'feedback'")
    a_read = Read.objects.get()
    page, errors = open_reading(browser, live_server, study, "reader-b")
    assert page.evaluate("liverread.shownLesion") == order_of(study, "reader-b")[0]
    assert page.locator("#progress").inner_text() == "0 of 3 lesions read"
    assert page.locator("#reveal").is_hidden()
    html = page.content()
    assert a_read.public_id not in html and "reader-a" not in html
    mine = page.evaluate(f"fetch('/api/studies/{study.public_id}/reads/').then(r => r.json())")
    assert mine == []
    assert all(p["coloured"] == 0 for p in pixels(page).values())
    assert get_user_model().objects.get(username="reader-b").reader.assignments.get().reads.count() == 0
    assert errors == []


def test_a_reader_revisits_and_amends_a_read_where_the_study_allows_it(browser, live_server, predicted):
    reader = browser_reader("reader-r", "general")
    study = new_study(predicted, [reader], name="Revisit study", allow_revisit=True, allow_amend=True)
    order = order_of(study, "reader-r")
    page, errors = open_reading(browser, live_server, study, "reader-r")
    submit_by_keyboard(page, "5", "4", "80")
    page.wait_for_function(f"() => liverread.mode === 'reading' && liverread.shownLesion === '{order[1]}'")
    page.click("#history button")
    page.wait_for_function(f"() => liverread.mode === 'reading' && liverread.shownLesion === '{order[0]}'")
    assert page.locator("[name=diagnosis][value=HCC]").is_checked() and page.input_value("#malignancy") == "80"
    page.keyboard.press("2")
    page.keyboard.press("3")
    page.fill("#malignancy", "15")
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => liverread.mode === 'reading' && liverread.shownLesion === '{order[1]}'")
    first, amendment = Read.objects.order_by("submitted_at")
    assert (first.diagnosis, first.malignancy) == (4, 80) and amendment.supersedes == first
    assert (amendment.diagnosis, amendment.confidence, amendment.malignancy) == (1, 3, 15)
    assert "(amended)" in page.locator("#history").inner_text()
    assert errors == []


def test_a_sequential_study_shows_the_model_before_the_aided_read_of_the_same_lesion(browser, live_server, predicted):
    reader = browser_reader("reader-s", "resident")
    study = new_study(predicted, [reader], name="Sequential study", design="sequential")
    order = order_of(study, "reader-s")
    page, errors = open_reading(browser, live_server, study, "reader-s")
    assert page.locator("#phase").get_attribute("data-phase") == "unaided" and page.locator("#reveal").is_hidden()
    assert all(p["coloured"] == 0 for p in pixels(page).values())
    submit_by_keyboard(page, "1", "2", "30")
    page.wait_for_function("() => liverread.mode === 'reading' && liverread.task.phase === 'aided'")
    assert page.evaluate("liverread.shownLesion") == order[0]  # the same lesion, not reloaded
    assert page.locator("#reveal").is_visible() and "Model" in page.locator("#reveal").inner_text()
    # the saliency overlay is drawn (a frame or two after the panel shows)
    page.wait_for_function(f"() => ({PIXELS})('{IMAGE}').some((p) => p.coloured > 0)", timeout=10_000)
    submit_by_keyboard(page, "5", "4", "85")
    page.wait_for_function("() => liverread.mode === 'feedback'")
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => liverread.mode === 'reading' && liverread.shownLesion === '{order[1]}'")
    unaided, aided = Read.objects.order_by("submitted_at")
    assert (unaided.phase, unaided.diagnosis, unaided.prediction_shown) == ("unaided", 0, None)
    assert (aided.phase, aided.diagnosis, aided.malignancy) == ("aided", 4, 85)
    assert aided.prediction_shown == study.prediction_for(aided.lesion) and aided.disclosure.purpose == "assist"
    assert errors == []


def test_the_study_admin_sees_the_dashboard_figures_drawn(browser, live_server, predicted):
    readers = [make_reader(f"sim{n}", group) for n, group in enumerate(["resident", "resident", "general", "academic"])]
    study = new_study(predicted, readers, name="Simulated study", design="sequential", is_open=False)
    simulate_reads(study)
    owner = get_user_model().objects.create_user("owner", password="a-long-test-password", is_staff=True)
    owner.groups.add(Group.objects.create(name=STUDY_ADMINS_GROUP))
    study.owner = owner
    study.save()
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("[name=username]", "owner")
    page.fill("[name=password]", "a-long-test-password")
    page.click("button[type=submit]")
    with page.expect_navigation(wait_until="load"):  # the figures are drawn server-side: the whole page first
        page.click("text=Results")
    sizes = page.evaluate("[...document.querySelectorAll('section svg')].map((s) => s.getBoundingClientRect().width)")
    assert len(sizes) == 4 and min(sizes) > 250
    page.screenshot(path=shot("dashboard.png"), full_page=True)


def test_an_aided_read_waits_while_its_lesion_is_owed_unaided_in_another_study(browser, live_server, predicted):
    reader = browser_reader("reader-w", "resident")
    new_study(predicted, [reader], name="Blinded study")  # owes an unaided read of every lesion
    study = new_study(predicted, [reader], name="Sequential study", design="sequential")
    page, errors = open_reading(browser, live_server, study, "reader-w")
    submit_by_keyboard(page, "1", "2", "30")
    page.wait_for_function("() => liverread.mode === 'waiting'")
    assert page.locator("#answer").is_hidden() and "waits" in page.locator("#status").inner_text()
    assert "read this lesion in another study" in page.locator("#reveal").inner_text()
    assert "Blinded study" not in page.content() and "tiny-secret-model" not in page.content()
    assert all(p["coloured"] == 0 for p in pixels(page).values())  # no saliency drawn
    assert errors == []


def test_an_aided_read_waits_for_a_prediction_being_computed_then_opens_by_itself(browser, live_server, predicted):
    reader = browser_reader("reader-p", "resident")
    study = new_study(predicted, [reader], name="Sequential study", design="sequential")
    prediction = study.prediction_for(lesion_in_study(study, order_of(study, "reader-p")[0]))
    type(prediction).objects.filter(pk=prediction.pk).update(status="running")
    page, errors = open_reading(browser, live_server, study, "reader-p")
    submit_by_keyboard(page, "1", "2", "30")
    page.wait_for_function("() => liverread.mode === 'waiting'")
    assert page.locator("#answer").is_hidden() and "being computed" in page.locator("#status").inner_text()
    type(prediction).objects.filter(pk=prediction.pk).update(status="done")
    page.wait_for_function("() => liverread.mode === 'reading' && liverread.task.phase === 'aided'", timeout=20_000)
    assert "tiny-secret-model" in page.locator("#reveal").inner_text() and page.locator("#answer").is_visible()
    assert errors == []
