// Render $...$ and $$...$$ with the vendored KaTeX on every page load, including the instant
// navigation of Material (document$ emits on each page) and mkdocs-jupyter notebook pages.
document$.subscribe(({ body }) => {
  renderMathInElement(body, {
    delimiters: [
      { left: "$$", right: "$$", display: true },
      { left: "$", right: "$", display: false },
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
    ignoredClasses: ["highlight", "mermaid"],
    throwOnError: false,
  });
});
