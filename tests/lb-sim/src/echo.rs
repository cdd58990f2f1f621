//! A test upstream: `kecs-lb-sim echo NAME PORT...` answers on each port, TCP and
//! UDP, with its own name, so a test can tell which upstream a proxy picked.
//! TCP: sends `NAME\n`, then echoes whatever it receives. UDP: replies
//! `NAME <datagram>` to each datagram.

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};

pub async fn run(args: &[String]) -> u8 {
    let mut stop = tokio::spawn(crate::stop_signal());
    let Some((name, ports)) = args.split_first() else {
        eprintln!("usage: kecs-lb-sim echo NAME PORT...");
        return 2;
    };
    let mut bound = Vec::new();
    for p in ports {
        let Ok(port) = p.parse::<u16>() else {
            eprintln!("echo: not a port: {p}");
            return 2;
        };
        let tcp = TcpListener::bind(("0.0.0.0", port)).await;
        let udp = UdpSocket::bind(("0.0.0.0", port)).await;
        let (Ok(tcp), Ok(udp)) = (tcp, udp) else {
            eprintln!("echo: cannot bind port {port}");
            return 1;
        };
        tokio::spawn(serve_tcp(tcp, name.clone()));
        tokio::spawn(serve_udp(udp, name.clone()));
        bound.push(port);
    }
    // Tests wait for this line before sending traffic.
    println!("echo {name} listening on {bound:?}");
    let _ = (&mut stop).await;
    0
}

async fn serve_tcp(listener: TcpListener, name: String) {
    while let Ok((stream, _)) = listener.accept().await {
        let name = name.clone();
        tokio::spawn(async move {
            let (mut rd, mut wr) = stream.into_split();
            if wr.write_all(format!("{name}\n").as_bytes()).await.is_ok() {
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
            }
        });
    }
}

async fn serve_udp(socket: UdpSocket, name: String) {
    let mut buf = vec![0u8; 65_536];
    while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
        let mut reply = format!("{name} ").into_bytes();
        reply.extend_from_slice(&buf[..n]);
        let _ = socket.send_to(&reply, peer).await;
    }
}
