// A Playwright reporter that repeats, after the summary, the errors of each failed attempt
// (of a test that failed, and of one that passed only when retried) and the warnings its
// server logged: CI keeps only the last lines of a run, and the list reporter prints a
// failure's details well above them.
const ANSI = /\u001b\[[0-9;]*m/g;
const MOST_LINES = 30;

function clip(text) {
  const lines = text.replace(ANSI, '').split('\n');
  return lines.length > MOST_LINES
    ? [...lines.slice(0, MOST_LINES), `… (${lines.length - MOST_LINES} more lines)`]
    : lines;
}

export default class LastWords {
  constructor() {
    this.failed = [];
  }

  onTestEnd(test, result) {
    if (result.status !== test.expectedStatus) this.failed.push({ test, result });
  }

  onEnd() {
    if (!this.failed.length) return;
    const out = ['', `=== ${this.failed.length} failed attempts: their errors again ===`];
    for (const { test, result } of this.failed) {
      const outcome = test.outcome() === 'flaky' ? 'passed when retried' : 'failed';
      out.push('', `--- ${test.titlePath().filter(Boolean).join(' › ')}`);
      out.push(`attempt ${result.retry + 1}: ${result.status}; the test ${outcome}`);
      for (const error of result.errors) out.push(...clip(error.message || error.value || String(error)));
      for (const a of result.attachments.filter((x) => x.name === 'server warnings' && x.body)) {
        out.push('server warnings:', ...clip(a.body.toString()));
      }
    }
    console.log(out.join('\n'));
  }
}
