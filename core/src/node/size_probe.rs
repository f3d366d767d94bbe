use core::mem::size_of;
extern crate std;
use std::println;
type P = crate::crypto::RustCryptoProvider;
#[test]
fn probe() {
    println!("Tunnel {}", size_of::<crate::session::Tunnel<P>>());
    println!("Session {}", size_of::<crate::session::Session<P>>());
    println!("OptSession {}", size_of::<Option<crate::session::Session<P>>>());
    println!("Key {}", size_of::<<P as crate::crypto::CryptoProvider>::Key>());
    println!("Initiator {}", size_of::<crate::noise::handshake::InitiatorState>());
    println!("RemoteKeys {}", size_of::<crate::noise::RemoteKeys>());
    println!("TunnelConfig {}", size_of::<crate::session::TunnelConfig>());
    println!("TunnelStats {}", size_of::<crate::session::TunnelStats>());
    println!("Member {}", size_of::<crate::node::Member<P>>());
    println!("MemberSlot {}", size_of::<crate::node::MemberSlot<P>>());
    println!("Intent {}", size_of::<crate::node::sync::Intent>());
    println!("Reassembly2 {}", size_of::<crate::ledger::Reassembly<u16, 2>>());
    println!("Outbox {}", size_of::<super::outbox::Outbox<crate::node::Route>>());
    println!("Staged {}", size_of::<super::Staged>());
    println!("Event {}", size_of::<crate::node::Event>());
    println!("Roles {}", size_of::<super::roles::Roles<[crate::election::MemberView; 17]>>());
    println!("Local {}", size_of::<crate::session::Local>());
    println!("Identity {}", size_of::<crate::identity::Identity>());
    println!("NetworkKeys {}", size_of::<crate::token::NetworkKeys>());
    println!("NodeConfig {}", size_of::<crate::node::NodeConfig>());
    println!("EntryRef {}", size_of::<crate::ledger::EntryRef>());
}
