#include "transport/mesh_link.hpp"

#include <zmq_addon.hpp>

#include <cstring>

namespace wsnode::transport::mesh {

link::link(zmq::context_t& ctx, std::string endpoint, int hwm, std::size_t index)
  : endpoint_(std::move(endpoint)), sub_(ctx, zmq::socket_type::sub),
    mon_(ctx, zmq::socket_type::pair) {
  sub_.set(zmq::sockopt::linger, 0);
  sub_.set(zmq::sockopt::rcvhwm, hwm);
  auto addr = "inproc://wsnode-mesh-link-" + std::to_string(index);
  if (zmq_socket_monitor(sub_.handle(), addr.c_str(),
                         ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0)
    throw zmq::error_t{};
  mon_.set(zmq::sockopt::linger, 0);
  mon_.connect(addr);
}

void link::connect() {
  sub_.connect(endpoint_);
}

void link::subscribe(std::string_view prefix) {
  sub_.set(zmq::sockopt::subscribe, prefix);
}

void link::unsubscribe(std::string_view prefix) {
  sub_.set(zmq::sockopt::unsubscribe, prefix);
}

std::vector<link::event> link::read_events() {
  std::vector<event> out;
  std::vector<zmq::message_t> parts;
  // ZeroMQ 4 monitor events: [u16 event | u32 value][endpoint]
  for (int i = 0; i < 64; ++i) {
    parts.clear();
    if (!zmq::recv_multipart(mon_, std::back_inserter(parts), zmq::recv_flags::dontwait))
      break;
    if (parts.empty() || parts[0].size() < sizeof(std::uint16_t))
      continue;
    std::uint16_t ev = 0;
    std::memcpy(&ev, parts[0].data(), sizeof ev);
    if (ev == ZMQ_EVENT_CONNECTED) {
      connected_ = true;
      out.push_back(event::connected);
    } else if (ev == ZMQ_EVENT_DISCONNECTED) {
      connected_ = false;
      out.push_back(event::disconnected);
    }
  }
  return out;
}

void link::close() {
  if (sub_.handle() != nullptr)
    zmq_socket_monitor(sub_.handle(), nullptr, 0);
  mon_.close();
  sub_.close();
}

} // namespace wsnode::transport::mesh
