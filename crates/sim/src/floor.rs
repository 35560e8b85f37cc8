//! The smallest reverse proxy on the gateway's own HTTP stack, for `bench/floor.sh`: a hyper
//! server (the gateway's settings: HTTP/1 and HTTP/2, `TCP_NODELAY`) relaying every request
//! as it is to one upstream and the answer back, streamed both ways, parsing nothing. With
//! `--client reqwest` it forwards through reqwest (the gateway's upstream client), with
//! `--client hyper` through hyper-util's pooled client directly. What this costs per request
//! is what the gateway cannot go below without changing its HTTP crates.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

#[derive(Clone, Copy, ValueEnum)]
enum ClientKind {
    Reqwest,
    Hyper,
}

#[derive(Parser)]
struct Args {
    #[arg(long)]
    listen: SocketAddr,
    /// Base URL of the upstream, e.g. `http://127.0.0.1:9000`.
    #[arg(long)]
    upstream: String,
    #[arg(long, value_enum, default_value = "reqwest")]
    client: ClientKind,
}

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Clone)]
enum Upstream {
    Reqwest(reqwest::Client),
    Hyper(std::sync::Arc<hyper_util::client::legacy::Client<HttpConnector, Incoming>>),
}

fn bad_gateway(e: impl std::fmt::Display) -> hyper::Response<Body> {
    let mut resp = hyper::Response::new(
        http_body_util::Full::new(Bytes::from(e.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = hyper::StatusCode::BAD_GATEWAY;
    resp
}

async fn relay(
    up: Upstream,
    base: std::sync::Arc<str>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Body>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{base}{path}");
    parts.headers.remove(hyper::header::HOST);
    match up {
        Upstream::Reqwest(client) => {
            let sent = client
                .request(parts.method, url)
                .headers(parts.headers)
                .body(reqwest::Body::wrap(body))
                .send()
                .await;
            Ok(match sent {
                Ok(resp) => {
                    let mut out = hyper::Response::builder().status(resp.status());
                    if let Some(h) = out.headers_mut() {
                        *h = resp.headers().clone();
                    }
                    let body = http_body_util::StreamBody::new(futures_util::StreamExt::map(
                        resp.bytes_stream(),
                        |r| {
                            r.map(hyper::body::Frame::data).map_err(|e| {
                                Box::new(e) as Box<dyn std::error::Error + Send + Sync>
                            })
                        },
                    ));
                    out.body(body.boxed()).unwrap_or_else(bad_gateway)
                }
                Err(e) => bad_gateway(e),
            })
        }
        Upstream::Hyper(client) => {
            let Ok(uri) = url.parse::<hyper::Uri>() else {
                return Ok(bad_gateway("bad upstream URL"));
            };
            parts.uri = uri;
            Ok(
                match client
                    .request(hyper::Request::from_parts(parts, body))
                    .await
                {
                    Ok(resp) => resp.map(|b| {
                        b.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                            .boxed()
                    }),
                    Err(e) => bad_gateway(e),
                },
            )
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let up = match args.client {
        ClientKind::Reqwest => Upstream::Reqwest(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .tcp_nodelay(true)
                .pool_idle_timeout(std::time::Duration::from_secs(90))
                .build()?,
        ),
        ClientKind::Hyper => {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            Upstream::Hyper(std::sync::Arc::new(
                hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector),
            ))
        }
    };
    let base: std::sync::Arc<str> = args.upstream.trim_end_matches('/').into();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (up, base, builder) = (up.clone(), base.clone(), builder.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| relay(up.clone(), base.clone(), req));
            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}
