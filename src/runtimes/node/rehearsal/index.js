'use strict';
// Loaded by a stem cell while it waits, through the same path as a function's handler module, so that the
// module loader's code is compiled before a cold start needs it. Never a function's code.
exports.handler = async (/** @type {unknown} */ event) => ({ rehearsal: true, event });
