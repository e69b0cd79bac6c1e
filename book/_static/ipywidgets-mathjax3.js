// ipywidgets typesets widget labels with the MathJax 2 API (MathJax.Hub.Queue), but the
// book loads MathJax 3, so each widget with a description threw "Cannot read properties
// of undefined (reading 'Queue')" and a label like "$\alpha$" stayed raw. This maps the
// MathJax 2 call onto MathJax 3. Loaded before the widget manager (_config.yml,
// nb_ipywidgets_js); its load listener runs before the manager renders the widgets.
window.addEventListener("load", function () {
  var mathjax = window.MathJax;
  if (!mathjax || mathjax.Hub) {
    return;
  }
  mathjax.Hub = {
    Queue: function (job) {
      var element = job && job[2];
      if (!element || typeof mathjax.typesetPromise !== "function") {
        return;
      }
      var ready = (mathjax.startup && mathjax.startup.promise) || Promise.resolve();
      ready.then(function () {
        return mathjax.typesetPromise([element]);
      }).catch(function (error) {
        console.warn("MathJax could not typeset a widget label:", error);
      });
    },
  };
});
