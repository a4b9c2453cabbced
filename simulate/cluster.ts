/**
 * The surge simulation's GPU capacity, as ECS runs it: tasks of the service, each on a host of
 * its own (one GPU, at most `maxTasks` hosts). A new host takes `instanceStartSeconds` (or
 * `warmStartSeconds` from the warm pool), a task on a ready host `taskStartSeconds`; a host without
 * a task is terminated after `hostScaleInSeconds`. A task told to stop finishes the messages it holds.
 */
import type { SimulationParams } from './params.js';
import type { EventQueue } from './queues.js';

/** A GPU host (one GPU), launched and maybe terminated. */
export interface Host {
  readonly launchedAt: number;
  ready: boolean;
  task: Task | undefined;
  idleSince: number;
  terminatedAt: number | undefined;
}

/** A task of the service: waiting for a host, starting, polling (idle) or classifying (busy). */
export interface Task {
  state: 'pending' | 'starting' | 'idle' | 'busy';
  host: Host | undefined;
  stopping: boolean;
  gone: boolean;
}

/** The service's tasks and the hosts under them; one method per kind of event. */
export class GpuCluster {
  readonly tasks: Task[] = [];
  readonly hosts: Host[] = [];
  private warmPool: number;
  // Peaks between samples count too.
  peakTasks: number;
  peakHosts: number;

  constructor(
    private readonly p: SimulationParams,
    private readonly events: EventQueue,
    /** The simulation's clock. */
    private readonly clock: () => number,
    /** A task became free to receive messages. */
    private readonly onTaskReady: () => void,
  ) {
    this.warmPool = p.warmPoolSize;
    this.peakTasks = p.minTasks;
    this.peakHosts = p.minTasks;
  }

  /** A minimum starts the run already up (the steady state of an always-on service). */
  startMinimum(): void {
    for (let i = 0; i < this.p.minTasks; i++) {
      const host: Host = {
        launchedAt: 0,
        ready: true,
        task: undefined,
        idleSince: 0,
        terminatedAt: undefined,
      };
      const task: Task = { state: 'idle', host, stopping: false, gone: false };
      host.task = task;
      this.hosts.push(host);
      this.tasks.push(task);
    }
  }

  running(): number {
    return this.tasks.filter((t) => t.state === 'idle' || t.state === 'busy').length;
  }

  liveHosts(): Host[] {
    return this.hosts.filter((h) => h.terminatedAt === undefined);
  }

  removeTask(task: Task): void {
    task.gone = true;
    const i = this.tasks.indexOf(task);
    if (i >= 0) this.tasks.splice(i, 1);
    const host = task.host;
    task.host = undefined;
    if (host !== undefined) {
      host.task = undefined;
      this.hostIdle(host);
    }
    this.place();
  }

  /** A host without a task is terminated after `hostScaleInSeconds` unless it gets one meanwhile. */
  private hostIdle(host: Host): void {
    host.idleSince = this.clock();
    const stamp = this.clock();
    this.events.push(this.clock() + this.p.hostScaleInSeconds, () => this.hostScaleIn(host, stamp));
  }

  /** Event: a host's idle time ran out. */
  private hostScaleIn(host: Host, idleSince: number): void {
    if (host.task === undefined && host.terminatedAt === undefined && host.idleSince === idleSince) {
      host.terminatedAt = this.clock();
      if (this.warmPool < this.p.warmPoolSize) this.warmPool++;
    }
  }

  private assign(task: Task, host: Host): void {
    host.task = task;
    task.host = host;
    task.state = 'starting';
    this.events.push(this.clock() + this.p.taskStartSeconds, () => this.taskStarted(task));
  }

  /** Event: a task on a host is up and polling. */
  private taskStarted(task: Task): void {
    if (task.gone) return;
    task.state = 'idle';
    this.peakTasks = Math.max(this.peakTasks, this.running());
    this.onTaskReady();
  }

  private launch(): void {
    const warm = this.warmPool > 0;
    if (warm) this.warmPool--;
    const host: Host = {
      launchedAt: this.clock(),
      ready: false,
      task: undefined,
      idleSince: this.clock(),
      terminatedAt: undefined,
    };
    this.hosts.push(host);
    this.peakHosts = Math.max(this.peakHosts, this.liveHosts().length);
    const startSeconds = warm ? this.p.warmStartSeconds : this.p.instanceStartSeconds;
    this.events.push(this.clock() + startSeconds, () => this.hostReady(host));
  }

  /** Event: a launched host joined the cluster. */
  private hostReady(host: Host): void {
    host.ready = true;
    this.hostIdle(host);
    this.place();
  }

  /** ECS places waiting tasks on free hosts; managed scaling launches hosts for the rest. */
  private place(): void {
    const live = this.liveHosts();
    let waiting = 0;
    for (const task of this.tasks) {
      if (task.state !== 'pending') continue;
      const host = live.find((h) => h.ready && h.task === undefined);
      if (host === undefined) waiting++;
      else this.assign(task, host);
    }
    let launching = live.filter((h) => !h.ready).length;
    let count = live.length;
    while (waiting > launching && count < this.p.maxTasks) {
      this.launch();
      launching++;
      count++;
    }
  }

  /** Start or stop tasks until the service runs `desired` (stopping waiting ones first). */
  reconcile(desired: number): void {
    const active = this.tasks.filter((t) => !t.stopping);
    for (let n = active.length; n < desired; n++) {
      this.tasks.push({ state: 'pending', host: undefined, stopping: false, gone: false });
    }
    let extra = active.length - desired;
    for (const state of ['pending', 'starting', 'idle', 'busy'] as const) {
      for (let i = active.length - 1; i >= 0 && extra > 0; i--) {
        const task = active[i];
        if (task === undefined || task.state !== state) continue;
        extra--;
        if (state === 'busy') task.stopping = true;
        else this.removeTask(task);
      }
    }
    this.place();
  }
}
