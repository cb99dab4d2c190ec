// sr-report's image viewer: two images of one test image (any two runs, or HR) side by side
// or under a before/after slider, with one zoom and pan for both. Plain JS, no network: the
// page (report.html) holds the list of images as JSON and the images sit beside it.
"use strict";

(function () {
  const MIN_ZOOM = 0.05;
  const MAX_ZOOM = 64;

  function make(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function picker(spec, chosen, onChange) {
    const select = make("select", { class: "sr-pick" });
    spec.sources.forEach((source, i) => {
      const option = make("option", { value: String(i), text: source.label });
      if (i === chosen) option.selected = true;
      select.appendChild(option);
    });
    select.addEventListener("change", () => onChange(Number(select.value)));
    return select;
  }

  function defaultPair(spec) {
    // A: the first method after HR and bicubic (else bicubic), B: HR
    const n = spec.sources.length;
    return [Math.min(n - 1, n > 2 ? 2 : 1), 0];
  }

  class Viewer {
    constructor(root, spec) {
      this.root = root;
      this.spec = spec;
      [this.a, this.b] = defaultPair(spec);
      this.mode = "slider";
      this.split = 0.5;
      this.view = { zoom: 1, x: 0, y: 0 };
      this.images = [];
      this.build();
      this.fit();
    }

    image(which) {
      const img = make("img", {
        class: "sr-img",
        alt: "",
        draggable: "false",
        width: String(this.spec.width),
        height: String(this.spec.height),
      });
      img.dataset.which = which;
      this.images.push(img);
      return img;
    }

    viewport(kind, children) {
      const port = make("div", { class: "sr-viewport", "data-mode": kind }, children);
      port.addEventListener("wheel", (e) => this.onWheel(e, port), { passive: false });
      port.addEventListener("pointerdown", (e) => this.onDrag(e, port));
      port.addEventListener("dblclick", () => this.fit());
      return port;
    }

    build() {
      const pickA = picker(this.spec, this.a, (i) => this.choose("a", i));
      const pickB = picker(this.spec, this.b, (i) => this.choose("b", i));
      this.scoreA = make("span", { class: "sr-score" });
      this.scoreB = make("span", { class: "sr-score" });
      const modes = make("span", { class: "sr-modes" });
      for (const [mode, text] of [["slider", "slider"], ["side", "side by side"]]) {
        const button = make("button", { type: "button", "data-mode": mode, text: text });
        button.addEventListener("click", () => this.setMode(mode));
        modes.appendChild(button);
      }
      const zooms = make("span", { class: "sr-zooms" });
      for (const [action, text] of [["fit", "fit"], ["one", "1:1"], ["in", "+"], ["out", "−"]]) {
        const button = make("button", { type: "button", "data-zoom": action, text: text });
        button.addEventListener("click", () => this.zoomButton(action));
        zooms.appendChild(button);
      }
      this.zoomLabel = make("span", { class: "sr-zoom-label" });
      zooms.appendChild(this.zoomLabel);
      const controls = make("div", { class: "sr-controls" }, [
        make("label", { text: "A " }, [pickA]), this.scoreA,
        make("label", { text: "B " }, [pickB]), this.scoreB,
        modes, zooms,
      ]);

      // slider: A below, B above clipped to the right of the split
      this.layerB = make("div", { class: "sr-layer-b" }, [this.image("b")]);
      this.divider = make("div", { class: "sr-divider" });
      this.tagA = make("span", { class: "sr-tag sr-tag-a" });
      this.tagB = make("span", { class: "sr-tag sr-tag-b" });
      this.sliderPort = this.viewport("slider", [
        this.image("a"), this.layerB, this.divider, this.tagA, this.tagB,
      ]);
      this.range = make("input", {
        class: "sr-split", type: "range", min: "0", max: "1000", value: "500",
        "aria-label": "slider position",
      });
      this.range.addEventListener("input", () => this.setSplit(Number(this.range.value) / 1000));
      this.sliderBox = make("div", { class: "sr-slider-box" }, [this.sliderPort, this.range]);

      // side by side: one viewport each, the same zoom and pan
      this.sideTagA = make("span", { class: "sr-tag sr-tag-a" });
      this.sideTagB = make("span", { class: "sr-tag sr-tag-a" });
      this.sideBox = make("div", { class: "sr-side-box" }, [
        this.viewport("side", [this.image("a"), this.sideTagA]),
        this.viewport("side", [this.image("b"), this.sideTagB]),
      ]);
      this.root.append(controls, this.sliderBox, this.sideBox);
      this.root.viewer = this;
      this.choose("a", this.a);
      this.choose("b", this.b);
      this.setMode(this.mode);
      this.setSplit(this.split);
    }

    choose(which, index) {
      this[which] = index;
      const source = this.spec.sources[index];
      for (const img of this.images) if (img.dataset.which === which) img.src = source.src;
      const tags = which === "a" ? [this.tagA, this.sideTagA] : [this.tagB, this.sideTagB];
      for (const tag of tags) tag.textContent = source.label;
      (which === "a" ? this.scoreA : this.scoreB).textContent = source.scores;
    }

    setMode(mode) {
      this.mode = mode;
      this.sliderBox.hidden = mode !== "slider";
      this.sideBox.hidden = mode !== "side";
      for (const button of this.root.querySelectorAll(".sr-modes button")) {
        button.classList.toggle("active", button.dataset.mode === mode);
      }
      this.fit();
    }

    setSplit(split) {
      this.split = Math.min(1, Math.max(0, split));
      const percent = (100 * this.split).toFixed(2) + "%";
      this.layerB.style.clipPath = "inset(0 0 0 " + percent + ")";
      this.divider.style.left = percent;
      this.range.value = String(Math.round(this.split * 1000));
    }

    ports() {
      return Array.from(this.root.querySelectorAll(".sr-viewport")).filter(
        (port) => port.dataset.mode === this.mode);
    }

    apply() {
      const { zoom, x, y } = this.view;
      const transform = "translate(" + x + "px, " + y + "px) scale(" + zoom + ")";
      for (const img of this.images) img.style.transform = transform;
      this.root.classList.toggle("sr-pixels", zoom >= 2);
      this.zoomLabel.textContent = Math.round(zoom * 100) + "%";
    }

    fit() {
      const port = this.ports()[0];
      if (!port || !port.clientWidth) return;
      const zoom = Math.min(port.clientWidth / this.spec.width, port.clientHeight / this.spec.height);
      this.view = {
        zoom: zoom,
        x: (port.clientWidth - this.spec.width * zoom) / 2,
        y: (port.clientHeight - this.spec.height * zoom) / 2,
      };
      this.apply();
    }

    zoomAt(factor, px, py) {
      const zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, this.view.zoom * factor));
      const ratio = zoom / this.view.zoom;
      this.view = { zoom: zoom, x: px - (px - this.view.x) * ratio, y: py - (py - this.view.y) * ratio };
      this.apply();
    }

    zoomButton(action) {
      const port = this.ports()[0];
      const cx = port.clientWidth / 2;
      const cy = port.clientHeight / 2;
      if (action === "fit") this.fit();
      else if (action === "one") this.zoomAt(1 / this.view.zoom, cx, cy);
      else this.zoomAt(action === "in" ? 2 : 0.5, cx, cy);
    }

    onWheel(event, port) {
      event.preventDefault();
      const box = port.getBoundingClientRect();
      this.zoomAt(Math.pow(2, -event.deltaY / 300), event.clientX - box.left, event.clientY - box.top);
    }

    onDrag(event, port) {
      if (event.button !== 0) return;
      event.preventDefault();
      const box = port.getBoundingClientRect();
      const onDivider = event.target === this.divider;
      let last = [event.clientX, event.clientY];
      port.setPointerCapture(event.pointerId);
      const move = (e) => {
        if (onDivider) {
          this.setSplit((e.clientX - box.left) / box.width);
        } else {
          this.view.x += e.clientX - last[0];
          this.view.y += e.clientY - last[1];
          this.apply();
        }
        last = [e.clientX, e.clientY];
      };
      const up = () => {
        port.removeEventListener("pointermove", move);
        port.removeEventListener("pointerup", up);
        port.removeEventListener("pointercancel", up);
      };
      port.addEventListener("pointermove", move);
      port.addEventListener("pointerup", up);
      port.addEventListener("pointercancel", up);
    }
  }

  function start() {
    const specs = JSON.parse(document.getElementById("sr-viewers").textContent);
    for (const details of document.querySelectorAll("details.sr-image")) {
      const spec = specs[Number(details.dataset.viewer)];
      const open = () => {
        if (!details.querySelector(".sr-viewer").viewer) {
          new Viewer(details.querySelector(".sr-viewer"), spec);
        }
      };
      details.addEventListener("toggle", () => { if (details.open) open(); });
      if (details.open) open();
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
