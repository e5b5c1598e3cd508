import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Caps connections that have not proved who sent them. A connection is anonymous from accept until one of its
 * requests passes authentication (a verified signature or a valid code link); a function URL with AuthType
 * NONE never proves anything, so its connections stay anonymous, but one whose request is being answered is
 * not evicted. Past the cap the oldest evictable anonymous connection is closed, so a client that opens
 * connections and trickles into them cannot keep newer clients out for longer than it keeps opening more.
 */
export class ConnectionGuard {
  /** Anonymous sockets, oldest first. */
  private readonly anonymous = new Set<Socket>();
  private readonly busy = new WeakSet<Socket>();

  constructor(private readonly maxAnonymous: number) {}

  attach(server: Server): void {
    server.on('connection', (socket: Socket) => {
      this.anonymous.add(socket);
      socket.once('close', () => this.anonymous.delete(socket));
      if (this.anonymous.size > this.maxAnonymous) this.evict(socket);
    });
  }

  /** A request on this connection was authenticated. */
  trust(socket: Socket): void {
    this.anonymous.delete(socket);
  }

  /** An anonymous request on this connection is being answered (not evictable until `done`). */
  busyWith(socket: Socket): void {
    this.busy.add(socket);
  }

  done(socket: Socket): void {
    this.busy.delete(socket);
  }

  get anonymousCount(): number {
    return this.anonymous.size;
  }

  private evict(newest: Socket): void {
    for (const s of this.anonymous) {
      if (s === newest || this.busy.has(s)) continue;
      this.anonymous.delete(s);
      s.destroy();
      return;
    }
    // Every other anonymous connection is being answered: refuse the new one.
    this.anonymous.delete(newest);
    newest.destroy();
  }
}
