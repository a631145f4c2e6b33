// Preloaded into the conformance fixture (`node --import`): whatever port it listens on, it
// listens on loopback only (the fixture itself binds every interface).
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || typeof args[0] === 'string') {
    const callback = args.find((a) => typeof a === 'function');
    return listen.call(this, { port: Number(args[0]), host: '127.0.0.1' }, callback);
  }
  if (args[0] && typeof args[0] === 'object' && !args[0].path) {
    args[0].host = '127.0.0.1';
  }
  return listen.apply(this, args);
};
