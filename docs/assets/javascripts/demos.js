// Embed the Gradio demos served by `make serve` (demos/server.py) at /demos/<name>/.
// A page opened without that server (mkdocs serve, a file) shows how to start it instead.
document$.subscribe(() => {
  document.querySelectorAll(".demo-embed[data-demo]").forEach((box) => {
    if (box.dataset.loaded) return;
    box.dataset.loaded = "1";
    const name = box.dataset.demo;
    const base = `/demos/${name}/`;
    fetch(base + "config", { cache: "no-store" })
      .then((r) => {
        if (!r.ok) throw new Error(r.status);
        const frame = document.createElement("iframe");
        frame.src = base;
        frame.className = "demo-frame";
        frame.title = box.dataset.title || name;
        frame.loading = "lazy";
        box.replaceChildren(frame);
      })
      .catch(() => {
        box.innerHTML =
          `<p class="demo-missing">这个交互演示需要本地服务器：在仓库根目录运行 <code>make serve</code>，` +
          `然后打开 <a href="http://127.0.0.1:8000/">http://127.0.0.1:8000/</a>。` +
          `（演示地址：<code>${base}</code>）</p>`;
      });
  });
});
