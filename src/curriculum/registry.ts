/** A name -> implementation table for the curriculum's extension points (scorers, pacing functions). */
import { ConfigError } from '../errors.js';

export class Registry<T> {
  private readonly items = new Map<string, T>();
  constructor(private readonly what: string) {}

  /** Adds `item` under `name`; a second registration of the same name throws. */
  register(name: string, item: T): void {
    if (this.items.has(name)) throw new ConfigError(`'register ${this.what}': name '${name}' is already registered`);
    this.items.set(name, item);
  }

  has(name: string): boolean {
    return this.items.has(name);
  }

  get(name: string): T {
    const item = this.items.get(name);
    if (item === undefined) throw new ConfigError(`unknown ${this.what} '${name}'; registered: ${this.names().map((n) => `'${n}'`).join(', ')}`);
    return item;
  }

  names(): string[] {
    return [...this.items.keys()];
  }
}
