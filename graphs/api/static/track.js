// Rating forms on a track page: each chosen score goes to the annotations API.
const track = document.currentScript.dataset.track;
for (const form of document.querySelectorAll("form.rate")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const note = data.get("note") || null;
    for (const [stage, score] of data.entries()) {
      if (stage === "note" || score === "") continue;
      const response = await fetch(`/v1/tracks/${track}/annotations`, {
        method: "POST", headers: {"content-type": "application/json"},
        body: JSON.stringify({turn: Number(form.dataset.turn), stage: stage === "overall" ? null : stage,
                              score: Number(score), note}),
      });
      if (!response.ok) { alert((await response.json()).detail); return; }
    }
    location.reload();
  });
}
