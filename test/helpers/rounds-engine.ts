// A stand-in for our benchmark process (test/bench-rounds.test.ts): measure.ts's timed, serving rounds as
// `autoglm bench --serve-rounds` does, over two measurements of a step that busy-waits 2 ms; then their records.
import { makeRecord, serveRounds, timed } from '../../src/bench/measure.js';

serveRounds(true);
const busy = (ms: number) => () => { const t = performance.now() + ms; while (performance.now() < t); };
const recs = [makeRecord('a', 'fp32', timed(busy(2), 5, 1)), makeRecord('b', 'fp32', timed(busy(2), 5, 1))];
for (const r of recs) console.log(JSON.stringify({ ...r, peak_rss_mb: 20 }));
