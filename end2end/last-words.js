// A Playwright reporter that repeats, after the summary, each failed attempt (of a test that
// failed, and of one that passed only when retried): the warnings its server logged, then
// its errors, last. CI keeps only the last lines of a run, and the list reporter prints a
// failure's details well above them. The same text goes to test-results/last-words.txt,
// which `make test` prints again at its end (a flaky test does not stop the run).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ANSI = /\u001b\[[0-9;]*m/g;
const ERROR_LINES = 30;
const WARNING_LINES = 8;
const LINE_CHARS = 300;

function lines(text) {
  return String(text).replace(ANSI, '').split('\n')
    .map((l) => (l.length > LINE_CHARS ? `${l.slice(0, LINE_CHARS)}…` : l));
}

/// The first `most` lines: an error's message and diff come first.
function head(text, most) {
  const all = lines(text);
  return all.length > most ? [...all.slice(0, most), `… (${all.length - most} more lines)`] : all;
}

/// The last `most` lines: the warnings nearest the failure.
function tail(text, most) {
  const all = lines(text);
  return all.length > most ? [`… (${all.length - most} lines before)`, ...all.slice(-most)] : all;
}

function errorText(error) {
  return error.message ?? error.value ?? JSON.stringify(error);
}

export default class LastWords {
  constructor() {
    this.failed = [];
  }

  onBegin(config) {
    this.file = join(config.projects[0]?.outputDir ?? 'test-results', 'last-words.txt');
  }

  onTestEnd(test, result) {
    if (result.status !== 'skipped' && result.status !== test.expectedStatus) {
      this.failed.push({ test, result });
    }
  }

  onEnd() {
    if (!this.failed.length) return;
    const out = ['', `=== ${this.failed.length} failed attempt(s), again ===`];
    for (const { test, result } of this.failed) {
      const outcome = test.outcome() === 'flaky' ? 'passed when retried (flaky)' : 'failed';
      out.push('', `--- ${test.titlePath().filter(Boolean).join(' › ')}`);
      out.push(`attempt ${result.retry + 1}: ${result.status}; the test ${outcome}`);
      for (const a of result.attachments.filter((x) => x.name === 'server warnings' && x.body)) {
        out.push('server warnings:', ...tail(a.body.toString(), WARNING_LINES));
      }
      for (const error of result.errors) out.push(...head(errorText(error), ERROR_LINES));
    }
    const text = out.join('\n');
    console.log(text);
    try {
      mkdirSync(join(this.file, '..'), { recursive: true });
      writeFileSync(this.file, `${text}\n`);
    } catch (e) {
      console.log(`last-words: could not write ${this.file}: ${e.message}`);
    }
  }
}
