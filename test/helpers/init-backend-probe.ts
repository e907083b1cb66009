/**
 * Child process of test/backend-init.test.ts: runs `initBackend` with the preference given as argv[2] ('-' for none)
 * and prints one JSON line: the backend's name, or the error's class and message.
 */
import { initBackend, type BackendPreference } from '../../src/backend/init.js';
import { backend } from '../../src/backend/index.js';

const arg = process.argv[2];
const how = process.argv[3] ?? 'init';
try {
  const b = how === 'sync' ? backend() : await initBackend(arg === '-' ? {} : { prefer: arg as BackendPreference });
  console.log(JSON.stringify({ name: b.name, current: backend().name }));
} catch (e) {
  console.log(JSON.stringify({ error: (e as Error).constructor.name, message: (e as Error).message }));
}
