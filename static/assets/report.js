// The report page: its print button opens the browser's print dialog (saved as PDF from there).
"use strict";

document.getElementById("print").addEventListener("click", () => window.print());
